"""LeNet-5 training epoch (60,000 MNIST-shaped images, batch 128, Adam): convnp vs PyTorch, same run,
same thread count.  Prints both times and the ratio.  (The full suite is benchmarks/run.py.)"""
import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "--only", "lenet", *sys.argv[1:]]
    runpy.run_path(str(Path(__file__).with_name("run.py")), run_name="__main__")
