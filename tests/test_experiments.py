"""convnp.experiments: the command, the reports, and the conclusions of every experiment.

The experiments run in their 'offline' mode (scikit-learn's digits in a 28x28 frame stand in for MNIST
and Fashion-MNIST), with CONVNP_DATA pointed at an empty folder, so nothing here needs the real
datasets or the network.  Each slow test runs one whole experiment (seconds to half a minute on one
thread) and checks the conclusion that holds robustly on that data.
"""
import argparse
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from convnp.errors import UserError  # noqa: E402
from convnp.experiments import EXPERIMENTS, load_results, run_experiment  # noqa: E402
from convnp.experiments.commands import add_experiment_parser  # noqa: E402

MAX_PNG_BYTES = 200_000


@pytest.fixture
def no_datasets(tmp_path, monkeypatch):
    """CONVNP_DATA -> an empty folder: MNIST and Fashion-MNIST are 'not on disk'."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("CONVNP_DATA", str(empty))
    return empty


def cli(argv):
    """Parse ``convnp experiment ...`` with the sub-command's parser and run it, like convnp.cli does."""
    parser = argparse.ArgumentParser(prog="convnp")
    add_experiment_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", *argv])
    return args.func(args)


def run_offline(name, tmp_path):
    out = tmp_path / name
    report = run_experiment(name, mode="offline", out=out, seed=0, log=None)
    check_report(out, report)
    return load_results(out)


def check_report(out, report):
    """report.md with its sections and figures, results.json, every PNG present and small."""
    assert report == out / "report.md"
    text = report.read_text()
    for heading in ("## Conclusion", "## Setup", "**Seed**", "**Threads**", "**Software**", "**Data**"):
        assert heading in text, f"{heading} missing from {report}"
    results = json.loads((out / "results.json").read_text())
    assert results["figures"], "an experiment draws at least one figure"
    for name in results["figures"]:
        png = out / name
        assert f"]({name})" in text, f"{name} is not linked from the report"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size < MAX_PNG_BYTES, f"{name} is {png.stat().st_size:,} bytes"
    assert results["conclusion"] and results["conclusion"] in text
    return results


# --- the command ---------------------------------------------------------------------------------------
def test_list_names_every_experiment(capsys):
    assert cli(["--list"]) == 0
    listing = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in listing
    assert set(EXPERIMENTS) == {"cnn-vs-mlp", "shift-robustness", "stride-vs-pool", "depthwise-separable",
                                "batchnorm", "optimizers"}


@pytest.mark.parametrize("argv, message", [
    (["no-such-thing"], "unknown experiment 'no-such-thing'"),
    ([], "give an experiment NAME"),
])
def test_user_errors_are_one_line(argv, message):
    with pytest.raises(UserError) as exit:
        cli(argv)
    text = str(exit.value)
    assert message in text and "\n" not in text


def test_full_run_without_the_dataset_says_what_to_do(no_datasets, tmp_path, monkeypatch):
    import convnp.data.download as download

    monkeypatch.setattr(download, "MIRRORS", {name: ["http://127.0.0.1:9/"] for name in download.MIRRORS})
    with pytest.raises(UserError) as exit:
        cli(["stride-vs-pool", "--out", str(tmp_path / "out")])
    text = str(exit.value)
    assert text.startswith("MNIST is needed") and "--quick" in text and "\n" not in text


@pytest.mark.slow
def test_quick_without_the_dataset_falls_back_offline_and_is_reproducible(no_datasets, tmp_path, capsys):
    """--quick with no MNIST on disk runs the offline substitute, says so, and the same seed gives the
    same numbers."""
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert cli(["stride-vs-pool", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "offline substitute" in printed and "wrote" in printed
    first, second = (check_report(out, out / "report.md") for out in outs)
    assert first["mode"] == "offline" and first["data"]["substitute"]
    assert any("MNIST was not found" in note for note in first["notes"])
    assert "MNIST was not found" in (outs[0] / "report.md").read_text()
    for label, numbers in first["models"].items():
        assert numbers["accuracy"] == second["models"][label]["accuracy"]
        assert numbers["val_accuracy"] == second["models"][label]["val_accuracy"]


# --- the conclusions, one experiment each ------------------------------------------------------------------
@pytest.mark.slow
def test_cnn_vs_mlp(no_datasets, tmp_path):
    results = run_offline("cnn-vs-mlp", tmp_path)
    lenet = results["lenet"]
    assert lenet["parameters"] == 44_426
    assert lenet["accuracy"] > 0.9
    widths = [row["hidden"] for row in results["mlp"]]
    assert widths == sorted(widths) and len(widths) >= 5
    # The CNN has far fewer parameters than the MLP needs: either no MLP of the grid matches it, or the
    # smallest that does has several times its parameters.
    matched = [row for row in results["mlp"] if row["reaches"]]
    if matched:
        assert matched[0]["hidden"] == results["matched_hidden"]
        assert matched[0]["parameters"] >= 3 * lenet["parameters"]
    else:
        assert results["matched_hidden"] is None
        assert "No MLP in the grid" in results["conclusion"]
    # Every MLP below LeNet's parameter count falls short of it.
    for row in results["mlp"]:
        if row["parameters"] <= lenet["parameters"]:
            assert row["accuracy"] < lenet["accuracy"]


@pytest.mark.slow
def test_shift_robustness(no_datasets, tmp_path):
    results = run_offline("shift-robustness", tmp_path)
    assert results["shifts"] == [0, 1, 2, 3, 4]
    curves = results["accuracy"]
    cnn = curves.pop("LeNet-5")
    assert len(curves) == 2
    for label, mlp in curves.items():
        # Shift hurts the MLP more than the CNN at 3 and 4 pixels, by a clear margin.
        for shift in (3, 4):
            assert cnn[shift] > mlp[shift] + 0.05, (label, shift, cnn, mlp)
            assert cnn[0] - cnn[shift] < mlp[0] - mlp[shift]
    assert "ahead of every MLP" in results["conclusion"]


@pytest.mark.slow
def test_stride_vs_pool(no_datasets, tmp_path):
    results = run_offline("stride-vs-pool", tmp_path)
    pool, stride = results["models"]["LeNet-5 (max pool)"], results["models"]["LeNet-5 (stride 2)"]
    assert pool["parameters"] == stride["parameters"] == 44_426
    assert stride["flops"] < pool["flops"] / 2          # the convolutions do 4x fewer multiply-adds
    assert pool["macs"] - stride["macs"] == 3 * (22_464 + 38_656)  # conv1 and conv2 at 1/4 of the positions
    assert stride["accuracy"] > 0.8 and pool["accuracy"] > 0.8


@pytest.mark.slow
def test_depthwise_separable(no_datasets, tmp_path):
    results = run_offline("depthwise-separable", tmp_path)
    standard, separable = results["models"]["standard 3x3"], results["models"]["depthwise-separable"]
    assert separable["parameters"] < standard["parameters"] / 3
    assert separable["flops"] < standard["flops"] / 3
    assert standard["accuracy"] > 0.5 and separable["accuracy"] > 0.3   # both learn something


@pytest.mark.slow
def test_batchnorm(no_datasets, tmp_path):
    results = run_offline("batchnorm", tmp_path)
    runs = {(r["batch_norm"], r["lr"]): r for r in results["runs"].values()}
    normal, high = results["config"]["lrs"]
    assert high >= 5 * normal
    # With batch norm the high learning rate trains; without it, it does not.
    assert runs[(True, high)]["outcome"] == "trained"
    assert runs[(False, high)]["outcome"] in ("stalled", "diverged")
    assert runs[(True, high)]["test_accuracy"] > runs[(False, high)]["test_accuracy"] + 0.3
    assert runs[(True, normal)]["test_accuracy"] >= runs[(False, normal)]["test_accuracy"]
    assert results["parameters"]["with"] > results["parameters"]["without"]


@pytest.mark.slow
def test_optimizers(no_datasets, tmp_path):
    results = run_offline("optimizers", tmp_path)
    opts = results["optimizers"]
    assert set(opts) == {"sgd", "momentum", "adam"}
    for numbers in opts.values():
        assert numbers["lr"] in results["grid"]
        assert max(numbers["tuning_accuracy"].values()) == numbers["tuning_accuracy"][str(numbers["lr"])]
    for numbers in opts.values():   # the accuracy curve ends with the final model
        assert numbers["test_accuracy_curve"][-1][1] == numbers["test_accuracy"]
        low, high = numbers["late_accuracy_range"]
        assert low <= numbers["late_accuracy_mean"] <= high
    # Within the budget Adam beats plain SGD, from the first epoch to the last quarter of the run.  Not
    # compared: the final model's accuracy alone, which at a constant learning rate moves from one
    # evaluation to the next (by 0.6 pp between machines whose BLAS kernels round differently).
    assert opts["adam"]["late_accuracy_mean"] > opts["sgd"]["late_accuracy_mean"]
    assert opts["adam"]["accuracy_after_epoch_1"] > opts["sgd"]["accuracy_after_epoch_1"]
    assert opts["adam"]["final_train_loss"] < opts["sgd"]["final_train_loss"]


@pytest.mark.parametrize("threads", [1, 2])
def test_an_experiment_runs_on_the_threads_its_report_states(monkeypatch, threads):
    """'Threads: 1' in a report is true: convnp's own pool AND BLAS run on one thread while the
    experiment runs (with 2, convnp's pool has 2 and BLAS 1); both are restored afterwards."""
    import types

    import convnp
    import convnp.experiments as experiments
    from convnp import parallel

    seen = {}

    def fake_run(ctx):
        seen.update(convnp=convnp.get_num_threads(), blas=parallel.blas_threads(), stated=ctx.threads)
        return types.SimpleNamespace(write=lambda: "report.md")

    fake = types.SimpleNamespace(run=fake_run, CONFIGS={"quick": {"dataset": "mnist"}})
    monkeypatch.setattr(experiments, "experiment_module", lambda name: fake)
    before = convnp.get_num_threads(), parallel.blas_threads()
    assert experiments.run_experiment("cnn-vs-mlp", mode="offline", threads=threads, log=None) == "report.md"
    assert seen["convnp"] == seen["stated"] == threads
    assert set(seen["blas"]) <= {1}  # every BLAS NumPy and SciPy loaded ([] where threadpoolctl finds none)
    assert (convnp.get_num_threads(), parallel.blas_threads()) == before


def test_experiments_build_their_optimizers_and_schedules_with_the_recipe_machinery(monkeypatch):
    """One training path: the experiments' 'adam', 'sgd' (plain) and 'momentum' are recipes.make_optimizer's
    optimizers, and their one-cycle schedule is recipes.make_scheduler's."""
    from convnp import nn, optim, recipes
    from convnp.experiments import common

    made = []
    real = recipes.make_optimizer
    monkeypatch.setattr(common, "make_optimizer", lambda *a, **k: made.append((a[0], k)) or real(*a, **k))
    params = list(nn.Linear(3, 2).parameters())
    assert isinstance(common.build_optimizer("adam", params, 1e-3), optim.Adam)
    sgd, momentum = common.build_optimizer("sgd", params, 0.1), common.build_optimizer("momentum", params, 0.1)
    assert [g["momentum"] for g in sgd.param_groups + momentum.param_groups] == [0.0, 0.9]
    assert [name for name, _ in made] == ["adam", "sgd", "sgd"]
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        common.build_optimizer("lbfgs", params, 0.1)
    scheduler, interval = recipes.make_scheduler("onecycle", sgd, 0.1, epochs=2, steps_per_epoch=5)
    assert isinstance(scheduler, optim.OneCycleLR) and interval == "batch"
    assert recipes.make_scheduler("none", sgd, 0.1, 2, 5) == (None, "epoch")


def test_a_quick_run_without_its_dataset_is_offline_before_it_starts(no_datasets, monkeypatch):
    """The mode is settled before the experiment runs, so it picks its settings once."""
    import types

    import convnp.experiments as experiments

    modes = []
    fake = types.SimpleNamespace(CONFIGS={"quick": {"dataset": "mnist"}},
                                 run=lambda ctx: modes.append((ctx.mode, list(ctx.notes))) or
                                 types.SimpleNamespace(write=lambda: "report.md"))
    monkeypatch.setattr(experiments, "experiment_module", lambda name: fake)
    experiments.run_experiment("cnn-vs-mlp", mode="quick", log=None)
    assert modes[0][0] == "offline" and "quick run used the offline substitute" in modes[0][1][0]


def test_a_run_whose_weights_turn_nan_is_reported_as_diverged_not_raised(tmp_path):
    """train_model's final evaluation of a diverged run: the NaN guard stops training, and the test
    set's NaN outputs count as class-0 predictions (as in fit's own evaluations) instead of raising."""
    from convnp import nn
    from convnp.data import ArrayDataset
    from convnp.experiments.common import Context, Data, train_model

    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    classes = [str(k) for k in range(10)]
    data = Data("tiny", ArrayDataset(x, y, classes), ArrayDataset(x, y, classes), "random images")
    ctx = Context("tiny", mode="offline", out=tmp_path, log=None)

    def build():
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        model[1].weight.data[...] = np.nan  # the state a run that blew up leaves behind
        return model

    run = train_model(ctx, "nan", build, data, epochs=1, lr=0.1, batch_size=32, optimizer="sgd",
                      schedule="constant", validate=False)
    assert run.diverged
    assert run.accuracy == pytest.approx(np.mean(y == 0))
