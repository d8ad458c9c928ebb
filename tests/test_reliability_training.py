"""Training under faults: divergence, signals, full disks, kills and resumes."""

import errno
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from abcrnn import checkpoint as checkpoint_module
from abcrnn.checkpoint import load_checkpoint
from abcrnn.cli import main
from abcrnn.errors import CheckpointError, TrainingError
from abcrnn.model import CharRNN
from abcrnn.tracking import read_metrics
from abcrnn.training import train
from ml_support import tiny_config, write_corpus

# Tiny settings for `abcrnn train` in a subprocess: two layers with dropout, so
# that an exact resume also needs the random states.
CLI_FLAGS = [
    "--embedding-dim", "8", "--hidden-size", "16", "--num-layers", "2",
    "--dropout", "0.1", "--batch-size", "2", "--seq-len", "16", "--lr", "0.01",
    "--lr-schedule", "constant", "--warmup-steps", "0", "--valid-fraction", "0.125",
    "--eval-every", "0", "--eval-batches", "1", "--sample-every", "0",
    "--log-every", "1", "--device", "cpu", "--threads", "1", "--bf16", "off",
    "--no-tensorboard", "--no-progress",
]  # fmt: skip

# One 2-bar tune, 37 bytes: 38 characters of training text with its blank line.
TINY_TUNE = "X:1\nT:Tiny\nM:2/4\nL:1/8\nK:C\nCEGc|c4|]\n"

# One tune of 109 bytes, three windows of 16 characters per batch of 2.
CARRY_TUNE = """X:1
T:Carry State
M:4/4
L:1/8
K:G
GABc d2B2|c2A2 G4|GABc d2g2|fedc B4|
gfed c2A2|BcdB G4|ABcA B2G2|A2F2 G4|]
"""


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path)


def last_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


def assert_same_weights(actual: Path, expected: Path) -> None:
    """Check that two checkpoints hold bit-identical weights and Adam moments."""
    one, two = load_checkpoint(actual), load_checkpoint(expected)
    assert one["step"] == two["step"]
    for name, tensor in two["model"].items():
        assert torch.equal(one["model"][name], tensor), name
    for index, state in two["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(one["optimizer"]["state"][index][key], state[key])


def metric_steps(run_dir: Path) -> list[int]:
    return [int(row["step"]) for row in read_metrics(run_dir / "metrics.csv")]


# Divergence.


def poison_at(target_step, recorded):
    """Return a callback that saves last.pt's bytes, then sets a weight to inf."""

    def callback(step, model, vocab, metrics):
        if step == target_step:
            recorded["bytes"] = last_path(recorded["run_dir"]).read_bytes()
            with torch.no_grad():
                model.head.weight[0, 0] = float("inf")

    return callback


@pytest.mark.parametrize(
    ("every", "message"),
    [
        (1, "training loss became nan by step 6: the model diverged"),
        (0, "training loss became nan by step 6: the model diverged. {last} keeps"),
    ],
)
def test_nan_loss_keeps_last_good_checkpoint(corpus, tmp_path, every, message):
    # The weight goes bad after step 5, and last.pt is from step 4 (saved every 2
    # steps). The loss is checked when logged or validated (every = 1), else before
    # a save.
    run_dir = tmp_path / "run"
    recorded = {"run_dir": run_dir}
    config = tiny_config(
        corpus,
        steps=10,
        sample_every=1,
        checkpoint_every=2,
        log_every=every,
        eval_every=every,
    )
    with pytest.raises(TrainingError) as error:
        train(config, run_dir, callbacks=[poison_at(5, recorded)])
    assert message.format(last=last_path(run_dir)) in str(error.value)
    assert "Lower --lr or set --grad-clip" in str(error.value)
    assert last_path(run_dir).read_bytes() == recorded["bytes"]
    saved = load_checkpoint(last_path(run_dir))
    assert saved["step"] == 4
    assert all(torch.isfinite(tensor).all() for tensor in saved["model"].values())


# Stop signals, in a real `abcrnn train` process.


def start_training(tmp_path: Path, corpus: Path, run_dir: Path) -> subprocess.Popen:
    """Start `abcrnn train` for 100000 steps, saving last.pt after every step."""
    argv = [sys.executable, "-m", "abcrnn", "train", "--corpus", str(corpus)]
    argv += ["--run-dir", str(run_dir), "--steps", "100000", "--checkpoint-every"]
    argv += ["1", *CLI_FLAGS]
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    # Output goes to files: a full pipe would block the process.
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        return subprocess.Popen(argv, stdout=out, stderr=err, env=env)


def wait_for_step(process: subprocess.Popen, path: Path, step: int) -> int:
    """Wait until the checkpoint at `path` reaches `step`; return its step."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before the signal"
        if path.exists():
            saved = load_checkpoint(path)["step"]
            if saved >= step:
                return saved
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"no checkpoint at step {step} within 120 s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_and_exits_0(tmp_path, corpus, signum):
    run_dir = tmp_path / "run"
    process = start_training(tmp_path, corpus, run_dir)
    wait_for_step(process, last_path(run_dir), 1)
    process.send_signal(signum)
    assert process.wait(timeout=60) == 0

    step = load_checkpoint(last_path(run_dir))["step"]
    out = (tmp_path / "out.txt").read_text()
    err = (tmp_path / "err.txt").read_text()
    assert step > 0
    assert f"stopped at step {step} of 100000" in out
    assert f"resume with: abcrnn train --resume {run_dir}" in out
    assert f"{signal.Signals(signum).name} received: stopped after step {step}" in err
    assert "Traceback" not in err

    # The resumed run continues from the saved step and appends to the metrics.
    argv = ["train", "--resume", str(run_dir), "--steps", str(step + 2)]
    assert main(argv) == 0
    assert load_checkpoint(last_path(run_dir))["step"] == step + 2
    assert metric_steps(run_dir) == list(range(1, step + 3))


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, corpus):
    run_dir, reference = tmp_path / "run", tmp_path / "reference"
    process = start_training(tmp_path, corpus, run_dir)
    wait_for_step(process, last_path(run_dir), 3)
    process.kill()
    process.wait(timeout=60)
    final = load_checkpoint(last_path(run_dir))["step"] + 3

    assert main(["train", "--resume", str(run_dir), "--steps", str(final)]) == 0
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(reference)]
    assert main(argv + ["--steps", str(final), *CLI_FLAGS]) == 0
    assert_same_weights(last_path(run_dir), last_path(reference))
    assert metric_steps(run_dir) == list(range(1, final + 1))


class Killed(Exception):
    """Stands in for a kill: the process ends at once, with no cleanup."""


def kill_at(target_step):
    def callback(step, model, vocab, metrics):
        if step == target_step:
            raise Killed

    return callback


@pytest.mark.parametrize(("kill_step", "saved_step"), [(3, 2), (4, 2), (5, 4), (7, 6)])
def test_resume_after_kill_equals_uninterrupted(
    corpus, tmp_path, kill_step, saved_step
):
    # Callbacks run before the save of their step, so a kill at step 4 loses it.
    config = tiny_config(
        corpus, steps=8, num_layers=2, dropout=0.2, sample_every=1, checkpoint_every=2
    )
    train(config, tmp_path / "reference", callbacks=[lambda *args: None])
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        train(config, run_dir, callbacks=[kill_at(kill_step)])
    assert load_checkpoint(last_path(run_dir))["step"] == saved_step
    # A kill during a save leaves a partial temporary file, which resume ignores.
    (run_dir / "checkpoints" / ".last.pt.0123456789ab.tmp").write_bytes(b"PK\x03")

    result = train(config, run_dir, resume=True)
    assert result.status == "finished"
    assert_same_weights(last_path(run_dir), last_path(tmp_path / "reference"))
    assert metric_steps(run_dir) == list(range(1, 9))


def test_kill_before_first_checkpoint(corpus, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        train(tiny_config(corpus, sample_every=1), run_dir, callbacks=[kill_at(1)])
    assert main(["train", "--resume", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert f"nothing to resume in {run_dir}" in error
    assert "start it again without --resume" in error


# Full disk and unwritable folders.


def failing_save(monkeypatch, operation: str, recorded: dict) -> None:
    """Make the second save of last.pt fail in `operation` as a full disk would."""
    real_save, real_fsync, real_replace = torch.save, os.fsync, os.replace
    saves = {"count": 0}

    def armed(target: str) -> bool:
        if "last.pt" not in target:
            return False
        saves["count"] += 1
        if saves["count"] == 2:
            recorded["bytes"] = recorded["last"].read_bytes()
            return True
        return False

    def save(payload, file, *args, **kwargs):
        if operation == "write" and armed(file.name):
            file.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(payload, file, *args, **kwargs)

    def fsync(descriptor):
        if operation == "fsync" and armed(os.readlink(f"/proc/self/fd/{descriptor}")):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_fsync(descriptor)

    def replace(source, target):
        if operation == "rename" and armed(str(target)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target))
        return real_replace(source, target)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize(
    ("operation", "reason"),
    [
        ("write", "No space left on device"),
        ("fsync", "Input/output error"),
        ("rename", "Read-only file system"),
    ],
)
def test_failed_save_keeps_previous_checkpoint(
    corpus, tmp_path, monkeypatch, operation, reason
):
    run_dir = tmp_path / "run"
    last = last_path(run_dir)
    recorded = {"last": last}
    failing_save(monkeypatch, operation, recorded)
    config = tiny_config(corpus, steps=8, checkpoint_every=2, eval_every=0)
    with pytest.raises(CheckpointError) as error:
        train(config, run_dir)
    assert str(error.value) == (
        f"failed to save checkpoint {last}: {reason} (the previous file is "
        f"unchanged); free disk space or make {last.parent} writable, then resume "
        "the run"
    )
    assert last.read_bytes() == recorded["bytes"]
    assert load_checkpoint(last)["step"] == 2
    assert sorted(path.name for path in last.parent.iterdir()) == ["last.pt"]


def test_full_disk_from_cli(corpus, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    failing_save(monkeypatch, "write", {"last": last_path(run_dir)})
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(run_dir)]
    assert main(argv + CLI_FLAGS + ["--steps", "6", "--checkpoint-every", "2"]) == 2
    error = capsys.readouterr().err
    assert f"failed to save checkpoint {last_path(run_dir)}: No space left" in error
    assert "Traceback" not in error


def test_checkpoint_folder_not_creatable(corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").write_text("a file where the folder should be")
    with pytest.raises(CheckpointError) as error:
        train(tiny_config(corpus), run_dir)
    folder = run_dir / "checkpoints"
    assert f"failed to save checkpoint {folder}/best.pt: File exists" in str(
        error.value
    )
    assert "(no file written)" in str(error.value)


def test_run_dir_that_is_a_file(corpus, tmp_path, capsys):
    run_file = tmp_path / "run"
    run_file.write_text("not a folder")
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(run_file)]
    assert main(argv + CLI_FLAGS) == 2
    assert f"--run-dir {run_file} is a file; pass a folder" in capsys.readouterr().err


def test_run_dir_inside_a_file(corpus, tmp_path, capsys):
    # The folder cannot be created: the command names the path, with no traceback.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(blocker / "run")]
    assert main(argv + CLI_FLAGS) == 2
    error = capsys.readouterr().err
    assert error == f"abcrnn train: error: Not a directory: {blocker / 'run'}\n"


# Resume: counters, metrics, finished runs and incomplete checkpoints.


def test_resume_continues_counters(corpus, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    config = tiny_config(corpus, steps=6, eval_every=2)
    train(config, tmp_path / "reference")
    train(tiny_config(corpus, steps=4, eval_every=2), tmp_path / "run")
    caplog.clear()
    result = train(config, tmp_path / "run", resume=True)

    assert result.step == 6
    assert f"resumed {tmp_path / 'run'} at step 4" in caplog.text
    assert "step 5/6" in caplog.text
    assert "step 1/6" not in caplog.text
    assert metric_steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]
    assert_same_weights(last_path(tmp_path / "run"), last_path(tmp_path / "reference"))
    saved = load_checkpoint(last_path(tmp_path / "run"))
    assert len(saved["optimizer"]["state"]) == len(saved["model"])
    assert saved["scheduler"]["last_epoch"] == 6
    assert set(saved["rng"]) == {"python", "torch", "batches"}
    assert saved["vocabulary"]["chars"][0] == "\n"


def test_finished_run_has_nothing_to_do(corpus, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(run_dir)]
    assert main(argv + CLI_FLAGS + ["--steps", "3"]) == 0
    before = last_path(run_dir).read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert f"nothing to do: {run_dir} is already at step 3" in out
    assert last_path(run_dir).read_bytes() == before


def test_resume_from_weights_only_file(corpus, tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(tiny_config(corpus, steps=2), run_dir)
    weights = load_checkpoint(last_path(run_dir))["model"]
    torch.save(weights, last_path(run_dir))
    assert main(["train", "--resume", str(run_dir), "--steps", "4"]) == 2
    error = capsys.readouterr().err
    assert "not an abcrnn checkpoint" in error
    assert "a state dict of weights only" in error
    assert "Traceback" not in error


def test_resume_without_optimizer_state_warns(corpus, tmp_path, caplog):
    run_dir = tmp_path / "run"
    train(tiny_config(corpus, steps=2), run_dir)
    saved = torch.load(last_path(run_dir), weights_only=True)
    torch.save(dict(saved, optimizer=None, scheduler=None), last_path(run_dir))

    result = train(tiny_config(corpus, steps=4), run_dir, resume=True)
    assert result.step == 4
    assert (
        "the checkpoint has no optimizer or scheduler state, so it starts afresh at "
        "step 2"
    ) in caplog.text


# Corpus too small for the settings.


def test_corpus_shorter_than_window(tmp_path, capsys):
    corpus = tmp_path / "tiny.abc"
    corpus.write_text(TINY_TUNE)
    run_dir = tmp_path / "run"
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(run_dir), *CLI_FLAGS]
    code = main(argv + ["--seq-len", "100", "--batch-size", "64", "--steps", "1"])
    captured = capsys.readouterr()
    assert code == 2
    assert (
        "the training text has 38 characters but one window of --seq-len 100 needs "
        "101; use a shorter --seq-len (at most 37)"
    ) in captured.err
    assert "finished" not in captured.out
    assert not (run_dir / "checkpoints").exists()


def test_tiny_corpus_trains_with_small_window(tmp_path, capsys, caplog):
    corpus = tmp_path / "tiny.abc"
    corpus.write_text(TINY_TUNE)
    run_dir = tmp_path / "run"
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(run_dir), *CLI_FLAGS]
    assert main(argv + ["--seq-len", "8", "--batch-size", "2", "--steps", "2"]) == 0
    assert "the corpus has 1 tune, so training runs without validation" in caplog.text
    rows = read_metrics(run_dir / "metrics.csv")
    assert [row["step"] for row in rows] == ["1", "2"]
    assert all(row["val_loss"] == "" for row in rows)
    assert all(float(row["train_loss"]) > 0 for row in rows)
    assert load_checkpoint(last_path(run_dir))["step"] == 2


# No recurrent state is carried from one batch to the next.


def test_training_starts_each_batch_from_zero_state(tmp_path, monkeypatch):
    corpus = tmp_path / "carry.abc"
    corpus.write_text(CARRY_TUNE)
    states = []
    forward = CharRNN.forward

    def spy(self, x, state=None):
        states.append(state)
        return forward(self, x, state)

    monkeypatch.setattr(CharRNN, "forward", spy)
    config = tiny_config(corpus, seq_len=16, batch_size=2, steps=6, valid_fraction=0)
    train(config, tmp_path / "run")
    assert states == [None] * 6
    saved = load_checkpoint(last_path(tmp_path / "run"))
    assert all(torch.isfinite(tensor).all() for tensor in saved["model"].values())


def test_no_retain_graph_in_sources():
    sources = Path(__file__).parents[1] / "src" / "abcrnn"
    hits = [
        path.name
        for path in sources.rglob("*.py")
        if "retain_graph" in path.read_text(encoding="utf-8")
    ]
    assert hits == []
