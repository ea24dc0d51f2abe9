"""Every script in examples/ runs, passes its own checks (against PyTorch or hand-derived values),
prints what it is about, and writes its figure into the folder it is given."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# name: (figure it writes or None, phrases its output must contain)
EXPECTED = {
    "edge_detection": ("edge_detection.png", ["Sobel x response (5, 5)", "0    4    0   -4    0",
                                               "0    0    3    3    0    0"]),
    "shape_arithmetic": (None, ["output (8, 14, 14)", "output (2, 8, 8)", "-> (8, 7, 7)", "not whole: floor",
                                "ceil_mode=True"]),
    "lenet_shapes": (None, ["(1, 16, 4, 4)", "6 * 16 * 25 + 16", "2,416", "30,840", "= 44,426", "= 61,706",
                            "(1, 400)"]),
    "hand_forward_pass": (None, ["0.852 0.789", "0.817 0.874", "2x2 max pool -> 0.8740", "sum = 0.8520",
                                 "= 1.4110", "-1.3488"]),
    "tiny_cnn_lines": ("tiny_cnn_lines.png", ["total 114 parameters", "untrained validation accuracy",
                                              "trained validation accuracy"]),
    "batch_norm": (None, ["mean before", "std after", "values per channel: N * H * W = 576"]),
    "depthwise_separable": (None, ["18,432", "2,336", "0.1267", "1/C_out + 1/k^2"]),
    "receptive_field": ("receptive_field.png", ["[3, 5, 6, 10, 14, 16, 24, 32, 36, 52, 68]", "attention 1",
                                                "32x32"]),
}


def test_every_example_is_tested():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_checks_out(name, tmp_path):
    figure, phrases = EXPECTED[name]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *(["--out", str(tmp_path)] if figure
                                                                              else [])],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for phrase in phrases:
        assert phrase in out, f"{name}: {phrase!r} not in its output:\n{out}"
    checks = [line for line in out.splitlines() if line.startswith("check")]
    assert checks, f"{name} printed no check lines"
    for line in checks:
        assert line.endswith("OK") or "skipped" in line, line
    assert any("torch" in line.lower() and line.endswith("OK") for line in checks) or name == "receptive_field", \
        f"{name}: no check against PyTorch although it is installed"
    if figure:
        path = tmp_path / figure
        assert f"figure: {path}" in out
        with Image.open(path) as im:
            assert im.format == "PNG" and min(im.size) >= 300 and im.info.get("Title")
        assert path.stat().st_size < 200_000
    written = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert written == ([figure] if figure else []), f"{name} wrote {written}"
    if name == "tiny_cnn_lines":
        untrained = float(re.search(r"untrained validation accuracy: ([\d.]+)", out).group(1))
        trained = float(re.search(r"^trained validation accuracy: ([\d.]+)", out, re.M).group(1))
        assert untrained < 0.6 and trained >= 0.95
    assert seconds < 30, f"{name} took {seconds:.1f} s"

