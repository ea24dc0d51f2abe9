"""Images per second of data-parallel LeNet-5 training (convnp.distributed) on N MPI ranks:

    mpiexec -n 1 python benchmarks/bench_distributed.py      # then -n 2, -n 4 ...; rank 0 prints one line

MNIST-shaped random images, global batch 128 (each rank 128/N), Adam, one convnp thread per rank
(CONVNP_NUM_THREADS to change), 30 timed steps after 3 warm-up steps.  On one machine the ranks share
its cores and memory bandwidth: only a machine with at least N free cores per thread shows real scaling.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convnp import distributed, nn, optim, parallel  # noqa: E402
from convnp.backend import manual_seed  # noqa: E402
from convnp.data import DataLoader  # noqa: E402
from convnp.models import LeNet5  # noqa: E402
from convnp.tensor import Tensor  # noqa: E402
from convnp.train import TrainState  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    world = distributed.init()
    parallel.set_num_threads(int(os.environ.get("CONVNP_NUM_THREADS", "1")))
    manual_seed(0)
    model = LeNet5()
    world.broadcast_model(model)
    n = (args.steps + 3) * args.batch_size
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n)
    loader = world.shard(DataLoader((x, y), args.batch_size, shuffle=True, seed=0))
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    allreduce = world.gradient_allreduce(model, loader)
    loss_fn = nn.CrossEntropyLoss()
    state = TrainState(model, optimizer, None, loader, None, 1, {})
    start = None
    for step, (images, labels) in enumerate(loader):
        if step == 3:
            if world.comm is not None:
                world.comm.Barrier()
            start = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(Tensor(images)), labels)
        loss.backward()
        state.loss = loss.item()
        allreduce.on_before_step(state)
        optimizer.step()
    if world.comm is not None:
        world.comm.Barrier()
    seconds = time.perf_counter() - start
    if world.is_writer:
        images_per_second = args.steps * args.batch_size / seconds
        print(f"ranks {world.size}: {images_per_second:,.0f} images/s ({seconds / args.steps * 1000:.1f} ms per "
              f"step of {args.batch_size} images, {parallel.get_num_threads()} thread(s) per rank)")


if __name__ == "__main__":
    main()
