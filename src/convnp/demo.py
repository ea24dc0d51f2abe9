"""The main job, ``make demo``: train LeNet-5 on MNIST for 5 epochs and report test accuracy.

Falls back to scikit-learn's bundled digits (upsampled to 28x28), saying so, when MNIST is neither in
the data directory nor downloadable.
"""
import sys
import time

from . import data, models, optim, train
from .backend import manual_seed

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def load_data():
    """(train, test, name): MNIST when available, else the bundled digits at 28x28."""
    try:
        return data.mnist("train"), data.mnist("test"), "MNIST"
    except (FileNotFoundError, OSError) as error:
        print(f"MNIST is not available ({str(error).splitlines()[0]}).\n"
              f"Falling back to scikit-learn's bundled 8x8 digits, upsampled to 28x28.", file=sys.stderr)
        return data.digits("train", size=28), data.digits("test", size=28), "scikit-learn digits"


def main(epochs=5, batch_size=128, lr=2e-3, seed=0):
    manual_seed(seed)
    train_set, test_set, name = load_data()
    normalize = data.Normalize([MNIST_MEAN], [MNIST_STD])
    train_loader = data.DataLoader(train_set, batch_size, shuffle=True, seed=seed, transform=normalize)
    test_loader = data.DataLoader(test_set, 1000, transform=normalize)
    model = models.LeNet5()
    optimizer = optim.Adam(model.parameters(), lr=lr)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    print(f"Training LeNet-5 ({model.num_parameters():,} parameters) on {name}: {len(train_set):,} training "
          f"and {len(test_set):,} test images; Adam lr {lr} with cosine decay, batch {batch_size}, {epochs} epochs")
    start = time.perf_counter()
    train.fit(model, train_loader, test_loader, optimizer, epochs=epochs, scheduler=scheduler)
    metrics = train.evaluate(model, test_loader)
    print(f"Test accuracy on {name}: {metrics['accuracy'] * 100:.2f}% "
          f"({metrics['count']:,} images, {time.perf_counter() - start:.0f} s in all)")
    return metrics


if __name__ == "__main__":
    main()
