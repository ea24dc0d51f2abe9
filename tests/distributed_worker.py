"""One data-parallel training run, started by tests/test_distributed.py under ``mpiexec -n N``:

    python tests/distributed_worker.py OUT_FOLDER [batchnorm]

Each rank writes OUT_FOLDER/rank{r}.npz: its weights after STEPS SGD steps and the averaged gradient of
the first step.  The test also imports ``train_small`` and runs it in its own process (no MPI) as the
single-process truth.  With ``batchnorm`` the model has a BatchNorm2d, trained twice: with per-rank
statistics (``plain.*``) and with SyncBatchNorm (``sync.*``), buffers (running statistics) included.
"""
import sys
from pathlib import Path

import numpy as np

from convnp import distributed, nn, optim
from convnp.backend import manual_seed
from convnp.data import DataLoader
from convnp.train import Callback, fit

STEPS = 4           # 36 images in batches of 9: 4 steps; 9 images split 4 + 5 over two ranks
BATCH = 9


def small_data():
    rng = np.random.default_rng(7)
    return rng.standard_normal((STEPS * BATCH, 1, 8, 8)), rng.integers(0, 3, STEPS * BATCH)


def small_model(seed, batchnorm=False):
    """Conv (-> BatchNorm) -> ReLU -> max pool -> Linear, float64: 8x8 images, 3 classes."""
    manual_seed(seed)
    norm = [nn.BatchNorm2d(4)] if batchnorm else []
    return nn.Sequential(nn.Conv2d(1, 4, 3), *norm, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(36, 3)).double()


class FirstGradients(Callback):
    """The (already averaged) gradients of the first step."""

    def __init__(self, model):
        self.model, self.grads = model, None

    def on_before_step(self, state):
        if self.grads is None:
            self.grads = {name: p.grad.copy() for name, p in self.model.named_parameters()}


def train_small(world, batchnorm=False, sync=False):
    """Rank-dependent initial weights (the broadcast must make them rank 0's), then STEPS SGD steps."""
    model = small_model(seed=1 + world.rank, batchnorm=batchnorm)
    world.broadcast_model(model)
    if sync:
        distributed.convert_sync_batchnorm(model, world)
    x, y = small_data()
    loader = world.shard(DataLoader((x, y), BATCH, shuffle=True, seed=3))
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    first = FirstGradients(model)
    history = fit(model, loader, optimizer=optimizer, epochs=1, progress=False, log=None,
                  callbacks=[world.gradient_allreduce(model, loader), first])
    weights = {f"weight.{name}": p.data for name, p in model.named_parameters()}
    grads = {f"grad.{name}": g for name, g in first.grads.items()}
    buffers = {f"buffer.{name}": b for name, b in model.named_buffers()}
    return {**weights, **grads, **buffers, "train_loss": np.float64(history["train_loss"][0])}


if __name__ == "__main__":
    world = distributed.init()
    if sys.argv[2:] == ["batchnorm"]:
        result = {f"{kind}.{key}": value for kind in ("plain", "sync")
                  for key, value in train_small(world, batchnorm=True, sync=kind == "sync").items()}
    else:
        result = train_small(world)
    np.savez(Path(sys.argv[1]) / f"rank{world.rank}.npz", size=world.size, **result)
