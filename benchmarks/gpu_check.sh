#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, in one short call (a few minutes):
#   1. the CuPy-rules tests (tests/test_cupy_rules.py, tests/test_cupy_commands.py) on the real CuPy: parity, gradient
#      checks, LeNet-5 training steps, checkpoints from the GPU, train/evaluate/predict/viz --device cuda;
#   2. LeNet-5, the small VGG and a ResNet-style net: training steps of convnp on CuPy against PyTorch
#      on CUDA (benchmarks/gpu_steps.py);
#   3. convnp bench --device cuda: the suite's timed rows (LeNet-5, VGG, ResNet-20, small CNN, inference);
# and writes a small report into $OUT (default benchmarks/gpu-report).
#
# Needs, installed beforehand (the GPU machine may have no network): the dev environment
# (make .venv/.installed-dev), CuPy for its CUDA (pip install 'cupy-cuda12x>=13,<15' or cupy-cuda13x)
# and a CUDA build of torch.  Usage: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-benchmarks/gpu-report}
mkdir -p "$OUT"
status=0

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; } > "$OUT/machine.txt"
$PY -c "import cupy, torch, convnp; print('cupy', cupy.__version__, 'torch', torch.__version__, \
'torch.cuda', torch.cuda.is_available(), 'convnp.cuda', convnp.cuda.is_available())" >> "$OUT/machine.txt" 2>&1 \
    || status=1
cat "$OUT/machine.txt"

echo "== CuPy-rules tests on the real CuPy"
CONVNP_REAL_CUPY=1 timeout 300 $PY -m pytest -q -p no:xdist tests/test_cupy_rules.py tests/test_cupy_commands.py 2>&1 | tee "$OUT/parity.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== training steps: convnp on CuPy vs PyTorch on CUDA"
timeout 300 $PY benchmarks/gpu_steps.py --device cuda --steps 20 --out "$OUT/steps.md" || status=1

echo "== convnp bench --device cuda (the suite's timed sections, ratios against PyTorch on CUDA)"
timeout 300 $PY -m convnp bench --device cuda --repeats 3 --only lenet vgg resnet smallcnn inference \
    --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

{ echo "# GPU check ($(date -u +%Y-%m-%d))"; echo; echo '```'; cat "$OUT/machine.txt"; echo '```'; echo;
  echo "parity: $(tail -n 1 "$OUT/parity.txt")"; echo; cat "$OUT/steps.md" 2>/dev/null; echo; echo '```';
  cat "$OUT/bench.txt" 2>/dev/null; echo '```'; } > "$OUT/report.md"
echo "wrote $OUT/report.md (status $status)"
exit $status
