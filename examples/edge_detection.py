"""Edge detection: the convolution that every CNN tutorial starts with.

1. A 7x7 image, black except for a bright vertical line in column 3, convolved with the Sobel x
   kernel [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] (no padding, stride 1 -> a 5x5 map).
2. An 8x8 image whose right half is 1, convolved with a vertical-edge kernel (three rows of
   [-1, 0, 1]) and its transpose, a horizontal-edge kernel (-> 6x6 maps).

Run:  python examples/edge_detection.py [--out DIR]   (the figure goes to DIR, default runs/examples)

Like PyTorch (and every CNN library), convnp's "convolution" is a cross-correlation: the kernel is slid
over the image WITHOUT flipping, y[i, j] = sum_{a, b} k[a, b] * x[i + a, j + b].

By hand (these are the truths the program checks):
* Sobel x on the line image.  Output column j sees input columns j, j+1, j+2; only column 3 is bright.
  j = 1: the line is under the kernel's right column (+1, +2, +1)  ->  +4
  j = 2: under the middle column (0, 0, 0)                         ->   0
  j = 3: under the left column (-1, -2, -1)                        ->  -4
  other j: the line is outside the window                          ->   0
  Every row is the same: [0, 4, 0, -4, 0] -- a positive edge (dark->bright) then a negative one.
* Vertical-edge kernel on the half-bright image: y[i, j] = 3 (x[., j+2] - x[., j]) = 3 where the window
  straddles the boundary between columns 3 and 4 (j = 2, 3), else 0: rows [0, 0, 3, 3, 0, 0].
* Horizontal-edge kernel: the image does not change from row to row, so every output is 0.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import convnp  # noqa: F401 - is convnp installed?
except ImportError:  # running from a checkout without installing: use ../src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convnp import functional as F

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
VERTICAL = np.array([[-1, 0, 1]] * 3, dtype=np.float32)
HORIZONTAL = VERTICAL.T.copy()


def convolve(image, kernel):
    """One-channel image (H, W) and kernel (k, k) -> (H - k + 1, W - k + 1) with convnp."""
    return F.conv2d(image[None, None], kernel[None, None]).data[0, 0]


def show(name, array):
    print(f"{name} {array.shape}:")
    for row in array:
        print("   " + " ".join(f"{v:4g}" for v in row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/examples", help="folder for the figure")
    args = parser.parse_args()

    line = np.zeros((7, 7), dtype=np.float32)
    line[:, 3] = 1.0
    half = np.zeros((8, 8), dtype=np.float32)
    half[:, 4:] = 1.0

    sobel_map = convolve(line, SOBEL_X)
    vertical_map = convolve(half, VERTICAL)
    horizontal_map = convolve(half, HORIZONTAL)

    print("1. A vertical line in column 3, Sobel x kernel [[-1,0,1],[-2,0,2],[-1,0,1]]")
    show("image", line)
    show("Sobel x response", sobel_map)
    print("   -> +4 left of the line (dark to bright), -4 right of it (bright to dark), 0 elsewhere\n")
    print("2. Right half bright; vertical and horizontal edge kernels")
    show("image", half)
    show("vertical-edge response", vertical_map)
    show("horizontal-edge response", horizontal_map)
    print("   -> the vertical kernel fires (3 = three rows of +1) on the two columns whose window straddles "
          "the edge;\n      the horizontal kernel sees no change from row to row: all 0\n")

    # The values derived by hand in the docstring.
    assert np.array_equal(sobel_map, np.tile([0, 4, 0, -4, 0], (5, 1)))
    assert np.array_equal(vertical_map, np.tile([0, 0, 3, 3, 0, 0], (6, 1)))
    assert np.array_equal(horizontal_map, np.zeros((6, 6)))
    print("check: the three maps equal the values derived by hand: OK")

    try:
        import torch
    except ImportError:
        print("check against PyTorch: skipped (torch is not installed)")
    else:
        for image, kernel, ours in ((line, SOBEL_X, sobel_map), (half, VERTICAL, vertical_map),
                                    (half, HORIZONTAL, horizontal_map)):
            theirs = torch.nn.functional.conv2d(torch.from_numpy(image)[None, None],
                                                torch.from_numpy(kernel)[None, None])[0, 0].numpy()
            np.testing.assert_allclose(ours, theirs)
        print("check: torch.nn.functional.conv2d gives the same three maps: OK")

    print(f"figure: {plot(args.out, line, half, sobel_map, vertical_map, horizontal_map)}")


def plot(out, line, half, sobel_map, vertical_map, horizontal_map):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("line image", line, "Sobel x", SOBEL_X, "response", sobel_map),
            ("right half = 1", half, "vertical edge", VERTICAL, "response", vertical_map),
            ("right half = 1", half, "horizontal edge", HORIZONTAL, "response", horizontal_map)]
    fig, axes = plt.subplots(3, 3, figsize=(9.5, 9.5))
    for r, (t_img, img, t_k, k, t_out, out_map) in enumerate(rows):
        for c, (title, array, cmap, symmetric) in enumerate(((t_img, img, "gray", False),
                                                             (f"kernel: {t_k}", k, "RdBu_r", True),
                                                             (f"{t_out} ({out_map.shape[0]}x{out_map.shape[1]})",
                                                              out_map, "RdBu_r", True))):
            ax = axes[r, c]
            limit = max(np.abs(array).max(), 1) if symmetric else None
            im = ax.imshow(array, cmap=cmap, vmin=-limit if symmetric else 0, vmax=limit if symmetric else 1)
            if symmetric:  # write the numbers of kernels and responses, white on the dark cells
                for (i, j), v in np.ndenumerate(array):
                    ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=8,
                            color="white" if abs(v) > 0.6 * limit else "black")
            ax.set_xticks(range(array.shape[1]))
            ax.set_yticks(range(array.shape[0]))
            ax.tick_params(labelsize=7)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("column")
            ax.set_ylabel("row")
            fig.colorbar(im, ax=ax, shrink=0.75)
    fig.suptitle("Edge detection by convolution: image * kernel = response\n"
                 "(red positive, blue negative; cross-correlation, as in PyTorch)", fontsize=12)
    fig.tight_layout()
    path = Path(out) / "edge_detection.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Title": "Edge detection by convolution"})
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
