"""Data-parallel training over MPI (convnp.distributed), run for real with ``mpiexec -n 2 --oversubscribe``,
one thread per rank, against the same training in one process.

The truths: the single-process run of the same code (tests/distributed_worker.py's ``train_small``,
which sees the whole global batch), and the plain ``convnp train`` for the command line.  Skipped with
a message when mpi4py or mpiexec is missing (``pip install 'convnp[distributed]'``; the dev extra has them).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convnp import checkpoint, distributed
from convnp.data import DataLoader
from convnp.distributed import ShardedLoader, World

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"

try:
    import mpi4py  # noqa: F401

    MPIEXEC = distributed.find_mpiexec()
    MISSING = None
except ImportError as error:
    MPIEXEC, MISSING = None, str(error)

needs_mpi = pytest.mark.skipif(MISSING is not None, reason=f"MPI is not available: {MISSING}")


def environment():
    """One thread per rank; Open MPI's consent to run as root (CI and containers run as root)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("OMPI_", "PMI", "PMIX"))}  # never inherit a surrounding MPI job
    env.update(CONVNP_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(SRC),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    return env


def mpiexec(n, *command, cwd=None):
    result = subprocess.run([MPIEXEC, "-n", str(n), "--oversubscribe", *command], capture_output=True, text=True,
                            env=environment(), cwd=cwd, timeout=180)
    assert result.returncode == 0, f"mpiexec -n {n} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Both ranks' results of tests/distributed_worker.py under mpiexec -n 2, and the single-process truth."""
    sys.path.insert(0, str(TESTS))
    import distributed_worker

    out = tmp_path_factory.mktemp("mpi")
    mpiexec(2, sys.executable, str(TESTS / "distributed_worker.py"), str(out))
    ranks = [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]
    single = distributed_worker.train_small(World(None, 0, 1))
    return ranks, single


@needs_mpi
def test_every_rank_holds_bit_identical_weights(two_ranks):
    ranks, _ = two_ranks
    assert [int(r["size"]) for r in ranks] == [2, 2]
    weights = [key for key in ranks[0] if key.startswith("weight.")]
    assert weights
    for key in weights:  # the ranks began from different initial weights: the broadcast made them one
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)


@needs_mpi
def test_the_averaged_first_gradient_is_the_gradient_of_the_combined_batch(two_ranks):
    ranks, single = two_ranks
    for key in (k for k in single if k.startswith("grad.")):
        np.testing.assert_allclose(ranks[0][key], single[key], rtol=1e-6, atol=1e-12, err_msg=key)
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)


@needs_mpi
def test_sgd_weights_and_the_epoch_loss_agree_with_one_process(two_ranks):
    ranks, single = two_ranks
    for key in (k for k in single if k.startswith("weight.")):
        np.testing.assert_allclose(ranks[0][key], single[key], rtol=1e-6, atol=1e-12, err_msg=key)
    # the logged training loss is the whole epoch's, summed over the ranks
    np.testing.assert_allclose(ranks[0]["train_loss"], single["train_loss"], rtol=1e-9)
    import distributed_worker  # (on sys.path since the fixture) the steps did move the weights

    initial = distributed_worker.small_model(seed=1).state_dict()
    assert all(np.abs(ranks[0][f"weight.{key}"] - initial[key]).max() > 1e-4 for key in initial)


@pytest.fixture(scope="module")
def two_ranks_batchnorm(tmp_path_factory):
    """A model with batch norm on two ranks, with per-rank statistics and with SyncBatchNorm, and the
    single-process truth (the whole global batch of 9 images, shards of 4 and 5 on the ranks)."""
    sys.path.insert(0, str(TESTS))
    import distributed_worker

    out = tmp_path_factory.mktemp("mpi-bn")
    mpiexec(2, sys.executable, str(TESTS / "distributed_worker.py"), str(out), "batchnorm")
    ranks = [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]
    single = distributed_worker.train_small(World(None, 0, 1), batchnorm=True, sync=True)  # one rank: plain BN
    return ranks, single


@needs_mpi
def test_sync_batchnorm_trains_like_one_process_on_the_global_batch(two_ranks_batchnorm):
    ranks, single = two_ranks_batchnorm
    checked = [key for key in single if key.startswith(("grad.", "weight.", "buffer.")) and "num_batches" not in key]
    assert any(key.startswith("buffer.1.running_var") for key in checked)
    for key in checked:  # gradients of step 1, weights and running statistics after 4 steps
        np.testing.assert_allclose(ranks[0][f"sync.{key}"], single[key], rtol=1e-6, atol=1e-12, err_msg=key)
        np.testing.assert_array_equal(ranks[0][f"sync.{key}"], ranks[1][f"sync.{key}"], err_msg=key)
    np.testing.assert_allclose(ranks[0]["sync.train_loss"], single["train_loss"], rtol=1e-9)
    # the control: per-rank statistics (4 and 5 images) are another computation, so the test can fail
    differs = [key for key in checked if key.startswith("weight.") and not np.allclose(
        ranks[0][f"plain.{key}"], single[key], rtol=1e-4, atol=0)]
    assert differs, "per-rank batch norm matched the global batch: the comparison above proves nothing"


def test_convert_sync_batchnorm_keeps_the_parameters_and_the_state_dict_keys():
    from convnp import nn

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.Flatten(), nn.BatchNorm1d(8)))
    weight, keys = model[1].weight, list(model.state_dict())
    assert distributed.convert_sync_batchnorm(model, World(None, 0, 1)) == 2
    assert isinstance(model[1], distributed.SyncBatchNorm) and isinstance(model[2][1], distributed.SyncBatchNorm)
    assert model[1].weight is weight and list(model.state_dict()) == keys


def test_the_shards_of_a_batch_are_the_batch():
    x, y = np.arange(11 * 2, dtype=np.float32).reshape(11, 2, 1, 1), np.arange(11)
    batches = [list(ShardedLoader(DataLoader((x, y), 5, shuffle=True, seed=4), rank, 3)) for rank in range(3)]
    whole = list(DataLoader((x, y), 5, shuffle=True, seed=4))
    assert [len(b) for b in batches] == [2, 2, 2]  # the last batch (1 image < 3 ranks) is skipped by all
    assert len(ShardedLoader(DataLoader((x, y), 5), 0, 3)) == 2
    for step in range(2):
        np.testing.assert_array_equal(np.concatenate([b[step][1] for b in batches]), whole[step][1])
    assert [len(b[0][1]) for b in batches] == [1, 2, 2]


def test_workers_flag_builds_the_mpiexec_command():
    command, env = distributed.mpiexec_command(3, distributed.without_workers_flag(
        ["train", "--workers", "3", "--epochs", "1", "--workers=3"]), mpiexec="/bin/true", cpus=2)
    assert command == ["/bin/true", "-n", "3", sys.executable, "-m", "convnp", "train", "--epochs", "1"]


def test_without_mpi_the_world_is_one_rank(monkeypatch):
    for name in distributed.MPI_LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    world = distributed.init()
    assert (world.comm, world.rank, world.size, world.is_writer) == (None, 0, 1, True)


# --- the command line ----------------------------------------------------------------------------------------
def train_args(out):
    return ["-m", "convnp", "train", "--dataset", "lines", "--epochs", "1", "--optimizer", "sgd",
            "--scheduler", "none", "--out", str(out), "--no-progress"]


def weights(folder):
    return checkpoint.load(Path(folder) / "last.npz")["model_state"]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "run"
    result = subprocess.run([sys.executable, *train_args(out)], capture_output=True, text=True, env=environment(),
                            timeout=180)
    assert result.returncode == 0, result.stderr
    return out


@needs_mpi
def test_mpiexec_n1_is_bit_exact_with_the_plain_run(plain_run, tmp_path):
    mpiexec(1, sys.executable, *train_args(tmp_path / "n1"))
    plain, one = weights(plain_run), weights(tmp_path / "n1")
    assert plain.keys() == one.keys()
    for key in plain:
        np.testing.assert_array_equal(one[key], plain[key], err_msg=key)


@needs_mpi
def test_train_workers_2_starts_mpiexec_and_rank_0_alone_reports(plain_run, tmp_path):
    out = tmp_path / "two"
    result = subprocess.run([sys.executable, *train_args(out), "--workers", "2"], capture_output=True, text=True,
                            env=environment(), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting 2 ranks" in result.stdout
    assert result.stdout.count("data parallel over 2 MPI ranks") == 1
    assert result.stdout.count("epoch 1/1") == 1 and result.stdout.count("final validation accuracy") == 1
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".npz") == ["best.npz", "last.npz"]
    plain, two = weights(plain_run), weights(out)
    for key in plain:  # float32 SGD on 2 x 8 images per step vs 16 in one process: the same up to rounding
        np.testing.assert_allclose(two[key], plain[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # and it resumes: a second epoch from last.npz on two ranks
    more = subprocess.run([sys.executable, "-m", "convnp", "train", "--out", str(out), "--resume", "--epochs", "2",
                           "--workers", "2", "--no-progress"], capture_output=True, text=True, env=environment(),
                          timeout=180)
    assert more.returncode == 0, more.stdout + more.stderr
    assert "resuming from" in more.stdout and more.stdout.count("epoch 2/2") == 1
    assert checkpoint.load(out / "last.npz").epoch == 2


@needs_mpi
def test_train_workers_2_sync_batchnorm_matches_one_process(tmp_path):
    """SmallVGG (six batch norm layers) for one epoch on 2 x 8 images per step: with --sync-batchnorm the
    weights are those of one process at batch 16, up to float32 rounding (per-rank statistics, without
    the flag, end about 2.6 times the weights' scale away: measured while writing this test).  The bound
    is 3e-4 of the scale: the 32- and 64-channel layers run as Winograd F(4x4, 3x3), whose float32
    rounding (about 7x im2col's, tests/test_winograd.py) an epoch of SGD on two different summation
    orders carries to 1.4e-4 of the scale (features.11.bias; 5e-5 for the weights)."""
    common = ["-m", "convnp", "train", "--dataset", "lines", "--model", "smallvgg", "--epochs", "1", "--optimizer",
              "sgd", "--scheduler", "none", "--batch-size", "16", "--no-progress"]
    single = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                            env=environment(), timeout=180)
    assert single.returncode == 0, single.stderr
    synced = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "two"), "--workers", "2",
                             "--sync-batchnorm"], capture_output=True, text=True, env=environment(), timeout=180)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "SyncBatchNorm: 6 batch norm layer(s)" in synced.stdout
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    for key in one:
        scale = float(np.abs(one[key]).max()) or 1.0
        np.testing.assert_allclose(two[key], one[key], rtol=0, atol=3e-4 * scale, err_msg=key)
