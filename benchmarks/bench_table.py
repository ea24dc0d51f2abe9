"""A markdown table of several `convnp bench` runs, each row's range and every run's ratio:

    convnp bench --json run1.json; convnp bench --json run2.json; convnp bench --json run3.json
    python benchmarks/bench_table.py run1.json run2.json run3.json

(issue 18's rule: a figure is reported from three runs, with its spread, not only the best).
"""
import json
import sys


def span(values, digits=3):
    low, high = min(values), max(values)
    return f"{low:.{digits}g}" if f"{low:.{digits}g}" == f"{high:.{digits}g}" else f"{low:.{digits}g}-{high:.{digits}g}"


def main(paths):
    runs = [{row["name"]: row for row in json.load(open(path))["rows"]} for path in paths]
    print("| benchmark | convnp | PyTorch | convnp / PyTorch (each run) |")
    print("|---|---|---|---|")
    for name in runs[0]:
        rows = [run[name] for run in runs if name in run]
        if "fraction" in rows[0]:
            print(f"| {name} | {span([r['convnp'] for r in rows])} GFLOP/s | peak {span([r['peak'] for r in rows])} | "
                  + ", ".join(f"{r['fraction']:.0%}" for r in rows) + " of the peak |")
        elif "speedup" in rows[0]:
            print(f"| {name} | {span([r['convnp'] for r in rows])} | loops {span([r['naive'] for r in rows])} | "
                  + ", ".join(f"{r['speedup']:,.0f}x" for r in rows) + " faster |")
        elif rows[0].get("torch") is not None:
            print(f"| {name} | {span([r['convnp'] for r in rows])} | {span([r['torch'] for r in rows])} | "
                  + ", ".join(f"{r['ratio']:.2f}x" for r in rows) + " |")
        else:
            print(f"| {name} | {span([r['convnp'] for r in rows])} | - | - |")


if __name__ == "__main__":
    main(sys.argv[1:])
