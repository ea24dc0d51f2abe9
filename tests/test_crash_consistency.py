"""Crash consistency: `convnp train` killed with SIGKILL at random moments, then resumed, again and again.

After every kill each file in the run folder loads (checkpoints, history, curves; a killed write may leave
a temporary file and the lock, both cleared by the next start), and the run finally resumed to the end
equals an uninterrupted one bit for bit: weights, optimizer, scheduler, RNG states, history (but times).
``make test`` kills CONVNP_KILLS (default 3) times at fixed random moments; ``make fuzz`` many more, at
fresh ones.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from convnp import checkpoint, files
from convnp.data.images import open_image_checked

SRC = Path(__file__).resolve().parents[1] / "src"
KILLS = int(os.environ.get("CONVNP_KILLS", "3"))
EPOCHS = 4
TRAIN = ["train", "--dataset", "lines", "--model", "tinycnn", "--epochs", str(EPOCHS), "--batch-size", "16",
         "--seed", "3"]


class Launch:
    """A `convnp train` process whose per-epoch log lines are timed as they arrive (a reader thread)."""

    def __init__(self, out, resume):
        argv = ["train", "--out", str(out), "--resume"] if resume else [*TRAIN, "--out", str(out)]
        env = {**os.environ, "PYTHONPATH": str(SRC), "CONVNP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "convnp", *argv], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
        self.epoch_times = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            if line.startswith("epoch "):
                self.epoch_times.append(time.monotonic())

    def wait_for_epochs(self, count, timeout=300):
        """Until ``count`` epoch lines arrived (each is logged just before that epoch's checkpoints are
        written) or the process ended."""
        deadline = time.monotonic() + timeout
        while len(self.epoch_times) < count and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)

    def finish(self):
        status = self.process.wait(timeout=300)
        self.reader.join(timeout=10)
        assert status == 0, self.process.stderr.read()


def _check_every_file_loads(out):
    """-> names of temporary files a killed write left (allowed: the next start removes them)."""
    leftovers = []
    if not out.exists():  # killed before it made the folder
        return leftovers
    for path in sorted(out.iterdir()):
        if path.suffix == ".npz":
            checkpoint.load_model(path)
        elif path.name == "history.json":
            json.loads(path.read_text())
        elif path.name == "history.csv":
            rows = path.read_text().splitlines()
            assert rows[0].startswith("epoch,") and all(len(row.split(",")) == len(rows[0].split(",")) for row in rows)
        elif path.suffix == ".png":
            open_image_checked(path)
        elif path.name.endswith(".tmp"):
            leftovers.append(path.name)
        else:
            assert path.name == files.LOCK_NAME, path
    return leftovers


def _assert_same_run(ours, reference):
    a, b = checkpoint.load(ours), checkpoint.load(reference)
    assert a.epoch == b.epoch == EPOCHS
    assert a.model_state.keys() == b.model_state.keys()
    for key in a.model_state:
        assert a.model_state[key].dtype == b.model_state[key].dtype
        assert a.model_state[key].tobytes() == b.model_state[key].tobytes(), key  # bit for bit
    for index, state in b.optimizer_state["state"].items():
        for name, value in state.items():
            assert np.asarray(a.optimizer_state["state"][index][name]).tobytes() == np.asarray(value).tobytes()
    assert a.optimizer_state["param_groups"] == b.optimizer_state["param_groups"]
    assert a.scheduler_state == b.scheduler_state
    assert a.rng_state == b.rng_state and a.loader_rng_state == b.loader_rng_state
    without_times = [{k: v for k, v in info.history.items() if k != "time"} for info in (a, b)]
    assert without_times[0] == without_times[1]


def _finish_with_kills(out, rng, kills_left, epoch_seconds):
    """Train into ``out``, killing each launch at a random moment until ``kills_left`` kills are done, then
    resuming to the end -> (kills, kills that left a temporary file behind, whether a launch completed:
    False when the last kill came after the final checkpoint).

    The moment: after a random number of the launch's epoch lines (0: during start-up or its first epoch),
    plus a random delay of up to 1.2 epochs, so kills fall in training, in checkpoint writes right after an
    epoch line, and in the final history and curves writes."""
    kills = in_writes = 0
    while True:
        done = checkpoint.load(out / "last.npz").epoch if (out / "last.npz").exists() else 0
        if done == EPOCHS:
            return kills, in_writes, False  # killed after its last checkpoint: nothing left to train
        launch = Launch(out, resume=done > 0)
        if kills == kills_left:
            launch.finish()
            return kills, in_writes, True
        launch.wait_for_epochs(int(rng.integers(0, EPOCHS - done + 1)))
        time.sleep(rng.uniform(0, 1.2) * epoch_seconds)
        if launch.process.poll() is not None:  # it finished first
            launch.finish()
            return kills, in_writes, True
        launch.process.send_signal(signal.SIGKILL)
        launch.process.wait()
        kills += 1
        in_writes += bool(_check_every_file_loads(out))


def test_training_killed_at_random_moments_resumes_bit_identical(tmp_path):
    reference = tmp_path / "reference"
    launch = Launch(reference, resume=False)
    launch.finish()
    epoch_seconds = float(np.diff(launch.epoch_times).mean())

    seed = None if "CONVNP_KILLS" in os.environ else 0  # make test: the same moments every time
    rng = np.random.default_rng(seed)
    kills = in_writes = runs = 0
    while kills < KILLS:
        out = tmp_path / f"killed-{runs}"
        new_kills, new_in_writes, completed = _finish_with_kills(out, rng, KILLS - kills, epoch_seconds)
        kills, in_writes, runs = kills + new_kills, in_writes + new_in_writes, runs + 1
        _assert_same_run(out / "last.npz", reference / "last.npz")
        if completed:  # else killed after the last checkpoint, before (or while) writing history and curves
            ours, theirs = (json.loads((folder / "history.json").read_text()) for folder in (out, reference))
            for saved in (ours, theirs):
                del saved["history"]["time"]
            assert ours == theirs
            left = [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == files.LOCK_NAME]
            assert left == []  # the last start removed the stale temporaries, and its lock went with it
    print(f"crash consistency: {kills} SIGKILLs ({in_writes} left a temporary file: inside a write) "
          f"over {runs} run(s), each resumed bit-identical")
