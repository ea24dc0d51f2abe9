"""The benchmark suite (convnp.bench) runs end to end: its workers start, measure both libraries and the
naive loops, and it writes its table and JSON.  (The figures themselves are measured by running it, not
asserted here: timings on shared machines are noisy.)"""
import json

import pytest

import convnp
from convnp import bench


def run_quick(tmp_path, capsys, *sections):
    out = tmp_path / "results.json"
    assert bench.main(["--quick", "--threads", "1", "--json", str(out), "--only", *sections]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


@pytest.mark.slow
def test_quick_run_measures_both_libraries_and_checks_the_fast_path_against_the_loops(tmp_path, capsys):
    results, printed = run_quick(tmp_path, capsys, "inference", "naive")
    assert results["threads"] == 1 and results["quick"] is True
    rows = {row["name"]: row for row in results["rows"]}
    for name in ("LeNet-5 inference, batch 512 (s per 1k images)", "LeNet-5 latency, batch 1 (ms)"):
        row = rows[name]
        assert row["convnp"] > 0 and row["torch"] > 0
        assert row["ratio"] == pytest.approx(row["convnp"] / row["torch"])
        assert name in printed
    naive = rows["naive loops vs fast path, LeNet-5 forward, batch 8 (s)"]
    assert naive["outputs_agree"] is True  # the loops of convnp.reference give the fast path's logits
    assert naive["speedup"] == pytest.approx(naive["naive"] / naive["convnp"]) and naive["speedup"] > 10


@pytest.mark.slow
def test_without_pytorch_its_rows_are_skipped_saying_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "torch_available", lambda: False)
    results, printed = run_quick(tmp_path, capsys, "inference")
    assert all(row["torch"] is None and row["ratio"] is None for row in results["rows"])
    assert "PyTorch not installed: its rows are skipped" in printed
    assert all("skipped" in line for line in printed.splitlines() if line.startswith("LeNet-5"))


def test_lenet_training_flops_counted_by_hand():
    # forward multiply-adds per image: conv1 24*24*6*25, conv2 8*8*16*150, fc 256*120 + 120*84 + 84*10;
    # backward repeats each twice (dW and dX) except conv1's dX (its input is the image)
    forward = [24 * 24 * 6 * 25, 8 * 8 * 16 * 150, 256 * 120, 120 * 84, 84 * 10]
    macs = 2 * forward[0] + 3 * sum(forward[1:])
    assert macs == 758_520
    assert bench.training_flops("lenet") == 2 * macs * 128


def test_device_cuda_without_a_gpu_is_one_line_naming_the_extra(capsys):
    from convnp.cli import main

    if convnp.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", "--device", "cuda", "--quick"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "pip install 'convnp[cuda]'" in err[0]
