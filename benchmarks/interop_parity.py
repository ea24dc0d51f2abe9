"""The interop parity table: each model x target x batch, the largest |difference| from convnp's output.

    .venv/bin/python benchmarks/interop_parity.py

Targets (see convnp.interop.parity.parity_table): onnxruntime running convnp's ONNX export,
convnp.onnx.load of that file, to_torch in eval mode, to_torch in train mode (output and every parameter
gradient), and torch.onnx.export of the to_torch module read back by convnp.onnx.load (against torch).
Inputs are standard-normal float32; batch-norm statistics are randomised.  float32 throughout.
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
        first = "n/a" if errors[1] != errors[1] else f"{errors[1]:.2e}"  # train-mode batch norm needs batch > 1
        print(f"| {name} | {target} | {first} | {errors[7]:.2e} |")
    worst = max(error for *_, error in rows if error == error)
    print(f"\nlargest difference: {worst:.2e}")


if __name__ == "__main__":
    main()
