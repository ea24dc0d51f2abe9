"""The benchmark suite from a checkout: ``python benchmarks/run.py [--quick] [--only ...]``.
The suite itself is ``convnp.bench`` (also ``convnp bench``); see its docstring."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convnp.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
