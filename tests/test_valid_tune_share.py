"""The sampling callback of `abcrnn train`: tunes checked during training, and the
valid share logged beside the loss (log line, metrics.csv, TensorBoard, plot)."""

from __future__ import annotations

import csv
import logging

from abcrnn.cli import main
from abcrnn.sampling import GenerationResult
from abcrnn.training_samples import valid_share
from ml_support import write_corpus

# Three valid tunes and one whose second bar is an eighth too long: share 0.75.
VALID = "X:1\nT:Good\nM:4/4\nL:1/8\nK:G\nGABc dBAG|GABc d4|]"
INVALID = "X:1\nT:Long\nM:4/4\nL:1/8\nK:G\nGABc dBAG|GABc d4e|]"
SAMPLED = [VALID, INVALID, VALID, VALID]

TINY_FLAGS = [
    "--embedding-dim", "8", "--hidden-size", "32", "--steps", "6",
    "--batch-size", "4", "--seq-len", "24", "--eval-every", "3",
    "--eval-batches", "2", "--log-every", "3", "--warmup-steps", "0",
    "--valid-fraction", "0.125", "--device", "cpu", "--threads", "1",
    "--bf16", "off", "--no-progress", "--sample-every", "3",
    "--sample-tunes", "4", "--sample-max-length", "40",
]  # fmt: skip


def test_valid_share_counts_checker_verdicts():
    assert valid_share(SAMPLED) == 0.75
    assert valid_share([]) == 0.0


def test_train_logs_valid_tune_share(tmp_path, monkeypatch, caplog):
    def fake_generate(model, vocab, config, device=None):
        assert config.num_tunes == 4
        return GenerationResult(list(SAMPLED))

    monkeypatch.setattr("abcrnn.training_samples.generate_tunes", fake_generate)
    corpus = write_corpus(tmp_path)
    run_dir = tmp_path / "run"
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(run_dir)]
    with caplog.at_level(logging.INFO, logger="abcrnn.tracking"):
        assert main(argv + TINY_FLAGS) == 0

    # metrics.csv: the share sits in the rows of the sampling steps.
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["step"] for row in rows] == ["3", "6"]
    assert [row["valid_tune_share"] for row in rows] == ["0.75", "0.75"]
    assert all(row["train_loss"] for row in rows)

    # The log line and the sampled tunes.
    lines = [record.getMessage() for record in caplog.records]
    assert sum("valid tunes 75%" in line for line in lines) == 2
    written = (run_dir / "samples" / "step-3.abc").read_text()
    assert written == "\n\n".join(SAMPLED) + "\n"

    # TensorBoard and the plot.
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    shares = events.Scalars("tunes/valid_share")
    assert [(item.step, item.value) for item in shares] == [(3, 0.75), (6, 0.75)]
    assert (run_dir / "loss.png").stat().st_size > 0
