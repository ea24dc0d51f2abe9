"""Training steps on a device: convnp (on CuPy for 'cuda') against PyTorch, same model, same weights, same
batch, Adam.  Prints and writes a small Markdown report (first-step loss agreement, ms per step, ratio).

    python benchmarks/gpu_steps.py --device cuda --out report.md     # on a machine with a GPU (gpu_check.sh)
    python benchmarks/gpu_steps.py --device cpu --steps 2            # a smoke run of this script on the CPU

Models: LeNet-5 (1x28x28, batch 128), the small VGG (3x32x32 + batch norm, batch 128) and a ResNet-style
net (two residual blocks of 3x3 convs with batch norm, 3x32x32, batch 64).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import convnp  # noqa: E402
from convnp import nn, optim  # noqa: E402
from convnp.interop import to_torch  # noqa: E402
from convnp.models import LeNet5, SmallVGG  # noqa: E402


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + x)


class ResNetStyle(nn.Module):
    def __init__(self, channels=32, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        self.blocks = nn.Sequential(ResidualBlock(channels), ResidualBlock(channels))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


MODELS = {"lenet5": (LeNet5, (1, 28, 28), 128), "vgg": (SmallVGG, (3, 32, 32), 128),
          "resnet": (ResNetStyle, (3, 32, 32), 64)}


def synchronize(device):
    if device == "cuda":
        import cupy
        import torch

        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()


def measure(name, device, steps):
    import torch

    make, shape, batch = MODELS[name]
    convnp.manual_seed(0)
    model = make()
    torch_model = to_torch(model, example_input=np.zeros((1, *shape), np.float32)).to(device)
    model.to(device)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    x, y = convnp.Tensor(images).to(device), convnp.Tensor(labels).to(device).data
    tx, ty = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    opt, topt = optim.Adam(model.parameters(), lr=1e-3), torch.optim.Adam(torch_model.parameters(), lr=1e-3)
    loss_fn, tloss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()

    def convnp_step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    def torch_step():
        topt.zero_grad()
        loss = tloss_fn(torch_model(tx), ty)
        loss.backward()
        topt.step()
        return loss.item()

    first = convnp_step(), torch_step()
    times = {}
    for library, step in (("convnp", convnp_step), ("torch", torch_step)):
        step()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        times[library] = (time.perf_counter() - start) / steps * 1000
    return {"model": name, "batch": batch, "first_loss_convnp": first[0], "first_loss_torch": first[1],
            "ms_convnp": times["convnp"], "ms_torch": times["torch"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--only", choices=list(MODELS), action="append")
    parser.add_argument("--out", help="write the Markdown report here too")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not convnp.cuda.is_available():
        print("gpu_steps: convnp.cuda.is_available() is False (CuPy missing or no GPU)", file=sys.stderr)
        return 1
    rows = [measure(name, args.device, args.steps) for name in (args.only or MODELS)]
    lines = [f"training steps on {args.device}, Adam, float32, {args.steps} timed steps after one warm-up", "",
             "| model | batch | first loss convnp | first loss torch | convnp ms/step | torch ms/step | ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['first_loss_convnp']:.6f} | {r['first_loss_torch']:.6f} | "
                     f"{r['ms_convnp']:.2f} | {r['ms_torch']:.2f} | {r['ms_convnp'] / r['ms_torch']:.2f}x |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    worst = max(abs(r["first_loss_convnp"] - r["first_loss_torch"]) / abs(r["first_loss_torch"]) for r in rows)
    if worst > 1e-4:
        print(f"gpu_steps: the first-step losses differ by {worst:.2g} relative", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
