"""`abcrnn train` and `abcrnn generate` from the command line, end to end."""

import dataclasses
import json

import pytest

from abcrnn.cli import build_parser, main
from abcrnn.config import TrainConfig
from ml_support import write_corpus

# Tiny settings: a 32-unit LSTM that trains in about a second on one core.
TINY_FLAGS = [
    "--embedding-dim", "8", "--hidden-size", "32", "--steps", "8",
    "--batch-size", "4", "--seq-len", "24", "--eval-every", "4",
    "--eval-batches", "2", "--log-every", "4", "--warmup-steps", "0",
    "--valid-fraction", "0.125", "--device", "cpu", "--threads", "1",
    "--bf16", "off", "--no-tensorboard", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train one tiny run for the generate tests; return its folder."""
    folder = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(folder)
    run_dir = folder / "run"
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(run_dir)]
    assert main(argv + TINY_FLAGS) == 0
    return run_dir


def train_subparser():
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    return subparsers.choices["train"]


def test_every_setting_has_a_flag():
    flags = {
        option
        for action in train_subparser()._actions
        for option in action.option_strings
    }
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in flags


def test_train_prints_settings_once_and_saves_them(tmp_path, capsys):
    corpus = write_corpus(tmp_path)
    run_dir = tmp_path / "run"
    argv = [
        "train",
        "--corpus",
        str(corpus),
        "--run-dir",
        str(run_dir),
        "--lr",
        "0.002",
    ]
    assert main(argv + TINY_FLAGS + ["--dropout", "0.1", "--optimizer", "adamw"]) == 0
    output = capsys.readouterr().out
    assert output.count("  lr ") == 1
    assert "finished 8 steps" in output
    saved = json.loads((run_dir / "config.json").read_text())["train_config"]
    assert saved["lr"] == 0.002
    assert saved["dropout"] == 0.1
    assert saved["optimizer"] == "adamw"
    assert saved["hidden_size"] == 32
    assert saved["tensorboard"] is False
    assert saved["corpus"] == [str(corpus)]


def test_default_run_dir_named_after_preset(tmp_path, monkeypatch, capsys):
    corpus = write_corpus(tmp_path)
    monkeypatch.chdir(tmp_path)
    flags = TINY_FLAGS + ["--steps", "2"]
    assert main(["train", "--preset", "lab", "--corpus", str(corpus)] + flags) == 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    assert runs[0].name.startswith("lab-")
    saved = json.loads((runs[0] / "config.json").read_text())["train_config"]
    assert saved["optimizer"] == "adam"
    assert saved["batch_size"] == 4  # the flag wins over the preset's 8


def test_resume_from_the_command_line(tmp_path, capsys):
    corpus = write_corpus(tmp_path)
    run_dir = tmp_path / "run"
    main(["train", "--corpus", str(corpus), "--run-dir", str(run_dir)] + TINY_FLAGS)
    capsys.readouterr()

    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert "nothing to do" in capsys.readouterr().out

    assert main(["train", "--resume", str(run_dir), "--steps", "10"]) == 0
    assert "finished 10 steps" in capsys.readouterr().out

    assert main(["train", "--resume", str(run_dir), "--hidden-size", "64"]) == 2
    error = capsys.readouterr().err
    assert "--hidden-size cannot change when resuming" in error
    assert "hidden_size=32" in error


def test_bad_setting_exits_2_with_message(tmp_path, capsys):
    corpus = write_corpus(tmp_path)
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(tmp_path / "run")]
    assert main(argv + TINY_FLAGS + ["--dropout", "1.5"]) == 2
    error = capsys.readouterr().err
    assert "dropout must be in [0, 1), got 1.5 (--dropout)" in error
    assert "Traceback" not in error


def test_short_corpus_exits_2(tmp_path, capsys):
    corpus = write_corpus(tmp_path)
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(tmp_path / "run")]
    assert main(argv + TINY_FLAGS + ["--seq-len", "100000"]) == 2
    assert "use a shorter --seq-len" in capsys.readouterr().err


def generate(trained, out, *flags):
    argv = ["generate", str(trained), "--out", str(out), "--no-render"]
    return main(argv + ["--max-length", "400", *flags])


def test_generate_same_seed_same_tunes(trained, tmp_path, capsys):
    assert generate(trained, tmp_path / "a", "--seed", "7", "--num-tunes", "3") in (
        0,
        1,
    )
    assert generate(trained, tmp_path / "b", "--seed", "7", "--num-tunes", "3") in (
        0,
        1,
    )
    assert generate(trained, tmp_path / "c", "--seed", "8", "--num-tunes", "3") in (
        0,
        1,
    )
    first = (tmp_path / "a" / "tunes.abc").read_text()
    assert first == (tmp_path / "b" / "tunes.abc").read_text()
    assert first != (tmp_path / "c" / "tunes.abc").read_text()
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == [
        "tune-01.abc",
        "tune-02.abc",
        "tune-03.abc",
        "tunes.abc",
    ]
    assert first.startswith("X:1\n")


def test_generate_reports_unfinished_tunes(trained, tmp_path, capsys):
    argv = ["generate", str(trained), "--out", str(tmp_path), "--no-render"]
    code = main(argv + ["--max-length", "3", "--num-tunes", "2", "--prime", "X:"])
    assert code == 1
    output = capsys.readouterr().out
    assert "2 of 2 tunes reached --max-length 3 without ending" in output
    # The prime is kept and 3 new characters follow, minus trailing whitespace.
    tune = (tmp_path / "tune-01.abc").read_text()
    assert tune.startswith("X:")
    assert len(tune.rstrip("\n")) <= 5


def test_generate_from_checkpoint_file(trained, tmp_path, capsys):
    checkpoint = trained / "checkpoints" / "last.pt"
    argv = ["generate", str(checkpoint), "--out", str(tmp_path), "--no-render"]
    assert main(argv + ["--temperature", "0", "--max-length", "50"]) in (0, 1)
    assert f"model: {checkpoint} (step 8)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "-1"], "temperature must be >= 0 (0 = greedy), got -1.0"),
        (["--top-p", "0"], "top_p must be in (0, 1]"),
        (["--prime", "X:1\nT:Café"], "'é'"),
    ],
)
def test_generate_bad_input_exits_2(trained, tmp_path, capsys, flags, message):
    assert generate(trained, tmp_path, *flags) == 2
    assert message in capsys.readouterr().err


def test_generate_missing_run(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nothing")]) == 2
    assert "checkpoint or run folder not found" in capsys.readouterr().err


def test_generate_renders_by_default(trained, tmp_path, capsys):
    argv = ["generate", str(trained), "--out", str(tmp_path), "--num-tunes", "1"]
    main(argv + ["--max-length", "200", "--seed", "1"])
    output = capsys.readouterr().out
    assert "audio backend:" in output or "rendering skipped:" in output
    assert (tmp_path / "tunes.abc").is_file()
