"""Tests for evaluation: bars and novelty, feature distances, `abcrnn evaluate`,
and sampling until tunes pass the checker (`abcrnn generate --only-valid`)."""

from __future__ import annotations

import csv
import json

import pytest

from abcrnn.abc.features import (
    TuneFeatures,
    feature_distances,
    length_bucket,
    total_variation,
    tune_features,
)
from abcrnn.abc.novelty import BarIndex, is_near_copy, novelty, tune_bars
from abcrnn.checked_sampling import generate_valid_tunes
from abcrnn.cli import main
from abcrnn.errors import ConfigError
from abcrnn.sampling import GenerationResult, SampleConfig
from ml_support import tiny_config, write_corpus

# Two training tunes. The generated tune below shares bars 2-4 of the first
# (three bars in a row) and bars 1-2 of the second, so its longest shared
# passage is 3 bars.
TRAINING = [
    "X:1\nT:One\nM:4/4\nL:1/8\nK:G\nGABc dBAG|FGAB cAFD|GABc dBAG|FGAB cAFD|g4 g4|]",
    "X:2\nT:Two\nM:4/4\nL:1/8\nK:G\nd2dB A2FA|B2BG E2EF|GABc d4|]",
]
GENERATED = (
    "X:1\nT:New\nM:4/4\nL:1/8\nK:G\n"
    'd2 dB A2 FA|B2BG E2EF|z8|"G"FGAB cAFD|GABc dBAG|FGAB !trill!cAFD|e8|]'
)

# A valid reel and a tune whose second bar is one eighth too long.
VALID = "X:1\nT:Good\nM:4/4\nL:1/8\nK:G\nGABc dBAG|GABc d4|]"
INVALID = "X:1\nT:Long\nM:4/4\nL:1/8\nK:G\nGABc dBAG|GABc d4e|]"


def test_tune_bars_normalised():
    text = 'X:1\nK:G\n|: d2 "G"(dB) ~A2 |[1 GAB c2d :|[2 [K:D] GAB c3 || % note\nz8|]'
    assert tune_bars(text) == ["d2dBA2", "GABc2d", "GABc3", "z8"]


def test_longest_shared_passage():
    index = BarIndex(TRAINING)
    bars = tune_bars(GENERATED)
    assert len(bars) == 7
    assert index.longest_shared(bars) == 3
    assert index.longest_shared(["d2dBA2FA", "B2BGE2EF"]) == 2
    assert index.longest_shared(["x", "y"]) == 0


def test_near_copy_rule():
    assert is_near_copy(8, 40) is True
    assert is_near_copy(7, 40) is False
    assert is_near_copy(4, 5) is True
    assert is_near_copy(3, 5) is False
    assert is_near_copy(0, 0) is False


def test_novelty_of_tunes():
    index = BarIndex(TRAINING)
    result = novelty([GENERATED, TRAINING[1]], index)
    assert result.longest == [3, 3]
    assert result.near_copies == 1  # the training tune itself
    figures = result.to_dict()
    assert figures["longest_shared_bars_mean"] == 3.0
    assert figures["longest_shared_bars_max"] == 3
    assert figures["near_copy_share"] == 0.5


def test_total_variation_exact():
    assert total_variation({"a": 0.5, "b": 0.5}, {"a": 1.0}) == 0.5
    assert total_variation({"a": 1.0}, {"b": 1.0}) == 1.0
    assert total_variation({"a": 0.25, "b": 0.75}, {"a": 0.25, "b": 0.75}) == 0.0


def test_length_buckets():
    assert length_bucket(0) == "0-7"
    assert length_bucket(7) == "0-7"
    assert length_bucket(8) == "8-15"
    assert length_bucket(32) == "32-47"
    assert length_bucket(63) == "48-63"
    assert length_bucket(64) == "64+"


def test_tune_features_read_header():
    features = tune_features("X:1\nM:C|\nL:1/8\nK:A Dorian\nEAAG ABcA|EAFA GEDG|]")
    assert features == TuneFeatures("2/2", "A", "dorian", "0-7", 2)
    missing = tune_features("X:1\nT:No header\nabc|")
    assert (missing.meter, missing.key_tonic, missing.mode) == ("none", "none", "none")


def test_feature_distances_exact():
    def features(meter: str, tonic: str, mode: str, length: str) -> TuneFeatures:
        return TuneFeatures(meter, tonic, mode, length, 0)

    generated = [features("6/8", "G", "major", "0-7")] * 2
    reference = [
        features("6/8", "G", "major", "8-15"),
        features("6/8", "D", "major", "8-15"),
        features("4/4", "A", "dorian", "8-15"),
        features("4/4", "G", "minor", "8-15"),
    ]
    assert feature_distances(generated, reference) == {
        "meter": 0.5,
        "key_tonic": 0.5,
        "mode": 0.5,
        "length": 1.0,
    }


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Train a tiny run (7 training tunes, 1 validation tune) and return it."""
    from abcrnn.training import train

    folder = tmp_path_factory.mktemp("evaluate")
    corpus = write_corpus(folder)
    run_dir = folder / "run"
    train(tiny_config(corpus, steps=12), run_dir)
    return run_dir


def test_evaluate_writes_every_field(trained_run, capsys):
    argv = ["evaluate", str(trained_run), "--num-tunes", "3", "--max-length", "80"]
    assert main(argv + ["--device", "cpu", "--seed", "4", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((trained_run / "evaluation.json").read_text())
    assert printed == saved
    assert set(saved) == {
        "run_dir",
        "checkpoint",
        "step",
        "settings",
        "corpus",
        "validation_bits_per_char",
        "generated",
        "real_tunes",
        "tunes",
    }
    assert saved["settings"] == {
        "num_tunes": 3,
        "temperature": 1.0,
        "seed": 4,
        "max_length": 80,
        "prime": None,
        "at_once": 64,
        "bf16": "auto",
    }
    assert saved["corpus"]["train_tunes"] == 7
    assert saved["corpus"]["valid_tunes"] == 1
    assert saved["corpus"]["matches_run"] is True
    assert len(saved["tunes"]) == 3

    score_fields = {
        "tunes",
        "valid_share",
        "bars_add_up_share",
        "midi_share",
        "error_tunes",
        "novelty",
        "feature_distances",
        "feature_distributions",
    }
    assert set(saved["generated"]) == score_fields | {"unfinished"}
    assert set(saved["real_tunes"]) == score_fields
    assert set(saved["generated"]["feature_distances"]) == {
        "meter",
        "key_tonic",
        "mode",
        "length",
    }
    # The held-out tune is a clean slip jig: the ceiling is 100 % on each share.
    real = saved["real_tunes"]
    assert real["tunes"] == 1
    assert real["valid_share"] == 1.0
    assert real["bars_add_up_share"] == 1.0
    assert real["midi_share"] in (1.0, None)  # None without abc2midi
    assert (trained_run / "evaluation.md").read_text().startswith("# Evaluation of ")


def test_evaluate_bits_per_char_match_training(trained_run):
    from abcrnn.evaluate import EvaluateConfig, evaluate_run

    report = evaluate_run(trained_run, EvaluateConfig(num_tunes=1, max_length=20))
    with open(trained_run / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    logged = [float(row["val_bpc"]) for row in rows if row["val_bpc"]]
    # The validation text is two windows long, so training scored all of it too;
    # best.pt is the checkpoint with the lowest validation loss.
    assert report["validation_bits_per_char"] == pytest.approx(min(logged), rel=1e-5)


def test_evaluate_missing_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def scripted_tunes(pattern):
    """Return a stand-in for generate_tunes that yields tunes in `pattern` order."""
    calls = []

    def fake(model, vocab, config, device=None):
        start = sum(calls)
        calls.append(config.num_tunes)
        chosen = [pattern[(start + i) % len(pattern)] for i in range(config.num_tunes)]
        return GenerationResult(chosen)

    return fake, calls


def test_generate_valid_tunes_counts_attempts(monkeypatch):
    fake, calls = scripted_tunes([INVALID, VALID, INVALID])
    monkeypatch.setattr("abcrnn.checked_sampling.generate_tunes", fake)
    result = generate_valid_tunes(None, None, SampleConfig(num_tunes=2), 20)
    # Batches of 2: [I, V], [I, I], [V, I] -> the second valid tune in batch 3.
    assert calls == [2, 2, 2]
    assert result.attempts == 6
    assert result.passed == 2
    assert result.tunes == [VALID, VALID]
    assert result.complete is True


def test_generate_valid_tunes_stops_at_cap(monkeypatch):
    fake, calls = scripted_tunes([INVALID, INVALID, VALID])
    monkeypatch.setattr("abcrnn.checked_sampling.generate_tunes", fake)
    result = generate_valid_tunes(None, None, SampleConfig(num_tunes=2), 5)
    assert calls == [2, 2, 1]
    assert result.attempts == 5
    assert result.passed == 1
    assert result.complete is False


def test_generate_valid_tunes_rejects_small_cap():
    with pytest.raises(ConfigError, match="--max-attempts 1 is below --num-tunes 2"):
        generate_valid_tunes(None, None, SampleConfig(num_tunes=2), 1)


def test_cli_only_valid_keeps_valid_tunes(trained_run, tmp_path, monkeypatch, capsys):
    fake, _calls = scripted_tunes([INVALID, VALID])
    monkeypatch.setattr("abcrnn.checked_sampling.generate_tunes", fake)
    out = tmp_path / "out"
    argv = ["generate", str(trained_run), "--num-tunes", "2", "--only-valid"]
    assert main(argv + ["--no-render", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "--only-valid: sampled 4 tunes, 2 passed the checker, kept 2 of 2" in printed
    assert (out / "tunes.abc").read_text() == f"{VALID}\n\n{VALID}\n"


def test_cli_only_valid_reports_cap(trained_run, tmp_path, monkeypatch, capsys):
    fake, _calls = scripted_tunes([INVALID, INVALID, INVALID, VALID])
    monkeypatch.setattr("abcrnn.checked_sampling.generate_tunes", fake)
    out = tmp_path / "out"
    argv = ["generate", str(trained_run), "--num-tunes", "2", "--only-valid"]
    argv += ["--max-attempts", "4", "--no-render", "--out", str(out)]
    assert main(argv + ["--device", "cpu"]) == 1
    printed = capsys.readouterr().out
    assert "sampled 4 tunes, 1 passed the checker, kept 1 of 2" in printed
    assert "only 1 of 2 tunes passed within --max-attempts 4" in printed
    assert (out / "tunes.abc").read_text() == f"{VALID}\n"
