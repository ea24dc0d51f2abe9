"""How far each unit sees: receptive fields of a CNN, layer by layer, versus a vision transformer.

Run:  python examples/receptive_field.py [--out DIR]   (the figure goes to DIR, default runs/examples)

CNN: a VGG-style stack on a 32x32 image, 3x3 convolutions (padding 1) and 2x2 max pools.  The
receptive field r (side, in input pixels) and the jump j (input pixels between neighbouring units)
follow, layer by layer, from r = 1, j = 1 at the input:
    r_out = r_in + (k - 1) * j_in,    j_out = j_in * s
    conv3: 3, conv3: 5, pool2: 6 (j 2), conv3: 10, conv3: 14, pool2: 16 (j 4), conv3: 24, conv3: 32,
    pool2: 36 (j 8), conv3: 52, conv3: 68
It grows by (k - 1) * j per layer: slowly at first, faster after each pool; only after 8 layers is
the field as wide as the image.
ViT-style transformer with 4x4 patches: the patch embedding (a 4x4 convolution with stride 4) gives each
token exactly its 4x4 patch; the first self-attention layer mixes every token with every other, so
from layer 1 on every unit sees the whole 32x32 image.

The program checks both against backpropagation: the input pixels whose gradient is non-zero when
backpropagating from one unit are exactly its receptive field (cut at the image border).
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np

try:
    import convnp
except ImportError:  # running from a checkout without installing: use ../src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convnp
from convnp import functional as F, nn
from convnp.inspect import summary

SIDE, PATCH, DIM = 32, 4, 8
HAND_CNN = [3, 5, 6, 10, 14, 16, 24, 32, 36, 52, 68]


def vgg_stack():
    layers = []
    for block, (c_in, c_out) in enumerate([(1, 4), (4, 4), (4, 4), (4, 4)]):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)]
        if block < 3:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def centre_extent(model_fn, x_shape, seed=0, batch=16):
    """Backpropagate from the centre unit of channel 0 of model_fn's output (positive weights and
    inputs: nothing cancels; a batch of random images so every max-pool cell wins somewhere) and
    return the side of the box of input pixels with a non-zero gradient."""
    rng = np.random.default_rng(seed)
    x = convnp.tensor(rng.uniform(0.1, 1, (batch,) + x_shape).astype(np.float32), requires_grad=True)
    y = model_fn(x)
    onehot = np.zeros(y.shape, np.float32)
    if y.ndim == 4:
        onehot[:, 0, y.shape[2] // 2, y.shape[3] // 2] = 1
    else:  # tokens (N, T, D): the token at the centre of the grid
        onehot[:, (y.shape[1] // 2 + int(math.isqrt(y.shape[1])) // 2), 0] = 1
    y.backward(gradient=onehot)
    touched = (x.grad != 0).any(axis=(0, 1))
    rows, cols = np.flatnonzero(touched.any(axis=1)), np.flatnonzero(touched.any(axis=0))
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def clipped(r, j, start, index, side):
    """Side of unit ``index``'s field [centre - (r-1)/2, centre + (r-1)/2] cut to the image [0, side-1]."""
    centre = start + index * j
    low, high = centre - (r - 1) / 2, centre + (r - 1) / 2
    return int(min(high, side - 1) - max(low, 0) + 1)


def cnn_rows(model):
    """(name, output side, r, j, expected extent of the centre unit) per layer; the centre of the first
    unit's field moves by ((k - 1)/2 - p) * j_in at each layer."""
    rows, start, j = [], 0.0, 1
    s = summary(model, (1, SIDE, SIDE))
    for row in s.rows[1:]:
        module = getattr(model, row.name)
        k, p, stride = module.kernel_size[0], module.padding[0], module.stride[0]
        start += ((k - 1) / 2 - p) * j
        j *= stride
        r = row.rf_size[0]
        out_side = row.output_shape[2]
        rows.append((f"{row.type}({k}x{k})", out_side, r, j, clipped(r, j, start, out_side // 2, SIDE)))
    return rows


class TinyViT:
    """Patch embedding + self-attention layers, written with convnp ops (one head, no MLP/norm: the
    receptive field depends only on who attends to whom)."""

    def __init__(self, layers=3, rng=None):
        rng = rng or np.random.default_rng(0)
        self.embed = nn.Conv2d(1, DIM, PATCH, stride=PATCH)
        self.qkv = [[convnp.tensor(rng.uniform(0.05, 0.3, (DIM, DIM)).astype(np.float32)) for _ in range(3)]
                    for _ in range(layers)]

    def tokens(self, x):
        y = self.embed(x)                                   # (N, D, 8, 8): one column per 4x4 patch
        n = y.shape[0]
        return y.reshape(n, DIM, -1).transpose(1, 2)    # (N, 64 tokens, D)

    def attend(self, t, layer):
        wq, wk, wv = self.qkv[layer]
        q, k, v = t @ wq, t @ wk, t @ wv
        weights = F.softmax((q @ k.transpose(1, 2)) * (1 / math.sqrt(DIM)), dim=-1)  # every token pair
        return weights @ v

    def upto(self, layers):
        def run(x):
            t = self.tokens(x)
            for layer in range(layers):
                t = self.attend(t, layer)
            return t
        return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/examples", help="folder for the figure")
    args = parser.parse_args()
    convnp.manual_seed(0)

    cnn = vgg_stack()
    for p in cnn.parameters():
        p.data = np.abs(p.data) + 0.01
    rows = cnn_rows(cnn)
    assert [r for _, _, r, _, _ in rows] == HAND_CNN
    print("check: the summary's receptive fields equal the hand derivation "
          f"{HAND_CNN}: OK")

    vit = TinyViT()
    for p in vit.embed.parameters():
        p.data = np.abs(p.data) + 0.01
    vit_fields = [PATCH] + [SIDE] * len(vit.qkv)

    print(f"\n{'layer':>5}  {'CNN layer':<14} {'map':>5} {'RF':>4} {'jump':>4} {'seen (measured)':>16}   "
          f"{'ViT layer':<17} {'RF':>4} {'seen (measured)':>16}")
    first_whole = None
    for depth in range(len(rows)):
        name, out_side, r, j, expected = rows[depth]
        prefix = nn.Sequential(*list(cnn)[:depth + 1])
        measured = centre_extent(prefix, (1, SIDE, SIDE))
        assert measured == (expected, expected), (name, measured, expected)
        if first_whole is None and measured == (SIDE, SIDE):
            first_whole = depth + 1
        cnn_text = f"{depth + 1:>5}  {name:<14} {out_side:>3}^2 {r:>4} {j:>4} {f'{measured[0]}x{measured[1]}':>16}"
        vit_text = ""
        if depth < len(vit_fields):
            vname = "patch embed 4x4/4" if depth == 0 else f"attention {depth}"
            vmeasured = centre_extent(vit.upto(depth), (1, SIDE, SIDE))
            assert vmeasured == (vit_fields[depth],) * 2, (vname, vmeasured)
            vit_text = f"   {vname:<17} {vit_fields[depth]:>4} {f'{vmeasured[0]}x{vmeasured[1]}':>16}"
        print(cnn_text + vit_text + ("   <- reaches past the image border: cut" if r > expected else ""))
    print("check: backpropagation from the centre unit reaches exactly the analytic field (cut at the border) "
          "for every CNN layer, the patch for the embedding, and the whole image after one attention layer: OK")
    wide = next(i + 1 for i, (_, _, r, _, _) in enumerate(rows) if r >= SIDE)
    print(f"\nThe CNN's field is as wide as the image after {wide} layers, and its centre unit sees all "
          f"{SIDE}x{SIDE} pixels after {first_whole};\nthe transformer's units see them all after 1 attention layer.")
    print(f"figure: {plot(args.out, rows, vit_fields)}")


def plot(out, rows, vit_fields):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    depth = np.arange(0, len(rows) + 1)
    cnn = [1] + [r for _, _, r, _, _ in rows]
    vit = [1] + vit_fields
    ax.plot(depth, cnn, "o-", label="CNN: 3x3 convs + 2x2 max pools")
    ax.plot(np.arange(len(vit)), vit, "s--", label=f"ViT: {PATCH}x{PATCH} patches + self-attention")
    ax.axhline(SIDE, color="gray", linestyle=":", label=f"the whole {SIDE}x{SIDE} image")
    for d, (name, _, r, _, _) in enumerate(rows, start=1):
        ax.annotate(name.split("(")[0].replace("Conv2d", "conv").replace("MaxPool2d", "pool"), (d, r),
                    textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
    for d, text, offset in ((1, "patch embedding", (-4, 16)), (2, "attention 1", (-6, 6))):
        ax.annotate(text, (d, vit[d]), textcoords="offset points", xytext=offset, ha="right", fontsize=7,
                    color="C1")
    ax.set_xlabel("layer (0 = the input pixel)")
    ax.set_ylabel("receptive field side (input pixels)")
    ax.set_xticks(depth)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title("Receptive field by depth: the CNN's grows step by step, attention's is global at once")
    fig.tight_layout()
    path = Path(out) / "receptive_field.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Title": "Receptive field: CNN versus ViT"})
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
