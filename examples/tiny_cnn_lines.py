"""TinyCNN learns to tell vertical, horizontal and diagonal lines apart (8x8 images).

Run:  python examples/tiny_cnn_lines.py [--out DIR]   (the figure goes to DIR, default runs/examples)

The network: Conv2d(1, 3, 3) -> ReLU -> MaxPool2d(2) -> Flatten -> Linear(27, 3).
By hand: conv 8 -> 6 (8 - 3 + 1), pool 6 -> 3, 3 * 3 * 3 = 27 features;
parameters 1 * 3 * 9 + 3 = 30 (conv) and 27 * 3 + 3 = 84 (linear), 114 in all.
Untrained, the three classes are guessed at about chance (1/3); after a few epochs of Adam the
validation accuracy is well above 95%, and the three 3x3 filters look like pieces of the patterns.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import convnp
except ImportError:  # running from a checkout without installing: use ../src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convnp
from convnp import data, models, nn, optim
from convnp.inspect import summary

EPOCHS, BATCH, LR = 12, 32, 0.01


def accuracy(model, dataset):
    model.eval()
    with convnp.no_grad():
        logits = model(convnp.tensor(dataset.x)).data
    model.train()
    return float((logits.argmax(axis=1) == dataset.y).mean()), logits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/examples", help="folder for the figure")
    args = parser.parse_args()

    convnp.manual_seed(0)
    train, val = data.oriented_lines("train", seed=0), data.oriented_lines("val", seed=0)
    print(f"data: {train} and {val}; classes {train.classes}")
    model = models.TinyCNN()

    s = summary(model, (1, 8, 8))
    for row in s.rows[1:]:
        print(f"   {row.type:<10} -> {str(row.output_shape):<14} {row.num_params:>3} parameters")
    print(f"   total {s.total_params} parameters")
    assert [r.output_shape for r in s.rows[1:]] == [(1, 3, 6, 6), (1, 3, 6, 6), (1, 3, 3, 3), (1, 27), (1, 3)]
    assert s.row("0").num_params == 1 * 3 * 9 + 3 and s.row("4").num_params == 27 * 3 + 3
    assert s.total_params == 114
    print("check: shapes and parameter counts match the hand derivation (30 + 84 = 114): OK")

    untrained, _ = accuracy(model, val)
    print(f"untrained validation accuracy: {untrained:.3f} (chance is 1/3)")

    optimizer = optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    loader = data.DataLoader(train, batch_size=BATCH, shuffle=True, seed=0)
    for epoch in range(EPOCHS):
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(convnp.tensor(xb)), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
        if epoch % 3 == 2 or epoch == EPOCHS - 1:
            print(f"   epoch {epoch + 1:>2}: train loss {total / len(train):.4f}, "
                  f"validation accuracy {accuracy(model, val)[0]:.3f}")
    trained, logits = accuracy(model, val)
    print(f"trained validation accuracy: {trained:.3f}")
    assert trained >= 0.95, f"validation accuracy {trained:.3f} < 0.95"
    print("check: validation accuracy >= 95%: OK")

    try:
        import torch
    except ImportError:
        print("check against PyTorch: skipped (torch is not installed)")
    else:
        twin = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                   torch.nn.Flatten(), torch.nn.Linear(27, 3))
        twin.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.state_dict().items()})
        with torch.no_grad():
            theirs = twin(torch.from_numpy(val.x)).numpy()
        np.testing.assert_allclose(logits, theirs, rtol=1e-4, atol=1e-5)
        print("check: PyTorch with the trained weights computes the same validation logits: OK")

    print(f"figure: {plot(args.out, model, train)}")


def plot(out, model, train):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    patterns = data.oriented_lines_patterns()
    filters = model[0].weight.data[:, 0]
    # which pattern each filter answers most strongly (mean of its ReLU'd map over the clean patterns)
    with convnp.no_grad():
        maps = convnp.functional.relu(model[0](convnp.tensor(patterns[:, None]))).data.mean(axis=(2, 3))
    favourite = maps.argmax(axis=0)  # per filter
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.2))
    for k in range(3):
        ax = axes[0, k]
        im = ax.imshow(patterns[k], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"pattern: {train.classes[k]}", fontsize=10)
        ax.set_xticks(range(0, 8, 2))
        ax.set_yticks(range(0, 8, 2))
    fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.8).set_label("pixel value")
    limit = np.abs(filters).max()
    for k in range(3):
        ax = axes[1, k]
        im = ax.imshow(filters[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
        for (i, j), v in np.ndenumerate(filters[k]):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * limit else "black")
        ax.set_title(f"learned filter {k}\nstrongest on: {train.classes[favourite[k]]}", fontsize=10)
        ax.set_xticks(range(3))
        ax.set_yticks(range(3))
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8).set_label("weight (0 = white)")
    fig.suptitle("TinyCNN on oriented lines: the three base patterns (top)\n"
                 "and the three 3x3 filters it learned (bottom)", fontsize=11)
    path = Path(out) / "tiny_cnn_lines.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Title": "TinyCNN learned filters and the line patterns"})
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
