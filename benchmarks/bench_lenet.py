"""LeNet-5 training epoch (60,000 MNIST-shaped images, batch 128, Adam): convnp vs PyTorch, same run,
same thread count.  Prints both times and the ratio.  (The whole suite: ``convnp bench``.)"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convnp.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--only", "lenet", *sys.argv[1:]]))
