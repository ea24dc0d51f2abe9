"""The interop parity table: each model x target x batch, the largest |difference| from convnp's output.

    .venv/bin/python benchmarks/interop_parity.py

Targets: onnxruntime running convnp's ONNX export, convnp.onnx.load of that file, and to_torch.
Inputs are standard-normal float32; batch-norm statistics are randomised (see convnp.interop.parity).
"""
from convnp.interop.parity import parity_table


def main():
    rows = parity_table()
    print("| model | target | batch 1 | batch 7 |")
    print("|---|---|---|---|")
    table = {}
    for name, target, batch, error in rows:
        table.setdefault((name, target), {})[batch] = error
    for (name, target), errors in table.items():
        print(f"| {name} | {target} | {errors[1]:.2e} | {errors[7]:.2e} |")
    worst = max(error for *_, error in rows)
    print(f"\nlargest difference: {worst:.2e}")


if __name__ == "__main__":
    main()
