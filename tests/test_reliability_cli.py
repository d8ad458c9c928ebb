"""Bad input on the command line: a clear message and exit status 2, no traceback."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from abcrnn.cli import main
from ml_support import write_corpus

# Tiny settings: a 16-unit LSTM that trains in about a second on one core.
TINY_FLAGS = [
    "--embedding-dim", "8", "--hidden-size", "16", "--steps", "6",
    "--batch-size", "4", "--seq-len", "24", "--eval-every", "3",
    "--eval-batches", "1", "--log-every", "3", "--warmup-steps", "0",
    "--valid-fraction", "0.125", "--device", "cpu", "--threads", "1",
    "--bf16", "off", "--no-tensorboard", "--no-progress",
]  # fmt: skip

# Two tunes, the first titled in Latin-1, not UTF-8: b"\xe9" at byte offset 9 is "é".
LATIN1_TUNES = (
    b"X:1\nT:Caf\xe9 Reel\nM:2/4\nL:1/8\nK:C\nCDEF|GABc|]\n\n"
    b"X:2\nT:Plain\nM:2/4\nL:1/8\nK:C\ncBAG|FEDC|]\n"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Write the input files that the command-line cases read."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "empty.abc").write_text("")
    (folder / "latin1.abc").write_bytes(LATIN1_TUNES)
    # A sparse file: 65 MiB long, but nothing is stored on disk.
    with open(folder / "huge.abc", "wb") as file:
        file.truncate(65 * 2**20)
    write_corpus(folder)
    return folder


def cases(folder):
    """Return case name -> (argv, exit status, text expected in stderr)."""
    tunes, run_dir = str(folder / "tunes.abc"), str(folder / "run")
    train = ["train", "--corpus", tunes, "--run-dir", run_dir]
    table = {
        "zero steps": (
            [*train, "--steps", "0"],
            2,
            "steps must be a positive integer, got 0 (--steps)",
        ),
        "negative steps": (
            [*train, "--steps", "-5"],
            2,
            "steps must be a positive integer, got -5 (--steps)",
        ),
        "zero batch size": (
            [*train, "--batch-size", "0"],
            2,
            "batch_size must be a positive integer, got 0 (--batch-size)",
        ),
        "zero seq_len": (
            [*train, "--seq-len", "0"],
            2,
            "seq_len must be a positive integer, got 0 (--seq-len)",
        ),
        "steps not a number": (
            [*train, "--steps", "many"],
            2,
            "argument --steps: invalid int value: 'many'",
        ),
        "lr not a number": (
            [*train, "--lr", "fast"],
            2,
            "argument --lr: invalid float value: 'fast'",
        ),
        "infinite lr": (
            [*train, "--lr", "inf"],
            2,
            "lr must be a finite number, got inf (--lr)",
        ),
        "unknown corpus": (
            ["corpus", "oneills1851"],
            2,
            "corpus source 'oneills1851' is not a file, a folder or a known "
            "collection; collections: oneills1850",
        ),
        "empty corpus": (
            ["corpus", str(folder / "empty.abc")],
            2,
            f"no tunes found in '{folder / 'empty.abc'}'",
        ),
        "huge corpus file": (
            ["corpus", str(folder / "huge.abc")],
            2,
            f"corpus file {folder / 'huge.abc'} is 65.0 MiB, over the limit of 64 MiB",
        ),
        "missing ABC file to check": (
            ["check", str(folder / "nothing.abc")],
            2,
            f"ABC file not found or not a file: {folder / 'nothing.abc'}",
        ),
        # These load PyTorch before they fail.
        "unknown corpus in train": (
            ["train", "--corpus", "nowhere.abc", "--run-dir", run_dir, *TINY_FLAGS],
            2,
            "corpus source 'nowhere.abc' is not a file, a folder or a known",
        ),
        "missing checkpoint": (
            ["generate", str(folder / "nothing.pt")],
            2,
            f"checkpoint or run folder not found: {folder / 'nothing.pt'}",
        ),
    }
    if not torch.cuda.is_available():
        table["cuda without CUDA"] = (
            ["generate", str(folder / "nothing.pt"), "--device", "cuda"],
            2,
            "--device cuda was requested but this PyTorch build sees no CUDA GPU; "
            "use --device cpu or --device auto",
        )
    return table


def run_cli(argv):
    """Run `python -m abcrnn ARGV`; return the completed process."""
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-m", "abcrnn", *argv]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


@pytest.fixture(scope="module")
def outcomes(files):
    """Run every case as its own process, several at a time."""
    table = cases(files)
    with ThreadPoolExecutor(max_workers=4) as pool:
        completed = list(pool.map(run_cli, [argv for argv, *_ in table.values()]))
    done = dict(zip(table, completed, strict=True))
    return {name: (done[name], *table[name][1:]) for name in table}


CASE_NAMES = list(cases(Path("inputs")))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_in_subprocess(outcomes, name):
    completed, status, message = outcomes[name]
    assert "Traceback" not in completed.stderr
    assert completed.returncode == status
    assert message in completed.stderr


def test_latin1_corpus_decoded_with_warning(files):
    path = files / "latin1.abc"
    completed = run_cli(["corpus", str(path)])
    assert completed.returncode == 0
    assert f"{path}: invalid UTF-8 at byte offset 9; read as Latin-1" in (
        completed.stdout
    )
    assert "'é'" in completed.stdout  # b"\xe9" read as Latin-1


# `abcrnn generate` settings, in this process.


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train one tiny run for the generate cases; return its folder."""
    folder = tmp_path_factory.mktemp("cli-run")
    corpus = write_corpus(folder)
    run_dir = folder / "run"
    argv = ["train", "--corpus", str(corpus), "--run-dir", str(run_dir)]
    assert main(argv + TINY_FLAGS) == 0
    return run_dir


def generate(trained, out, *flags):
    argv = ["generate", str(trained), "--out", str(out), "--no-render"]
    return main(argv + ["--device", "cpu", "--max-length", "60", *flags])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "-1"], "temperature must be >= 0 (0 = greedy), got -1.0"),
        (["--temperature", "nan"], "temperature must be >= 0 (0 = greedy), got nan"),
        (["--temperature", "inf"], "temperature must be finite (0 = greedy), got inf"),
        (["--top-k", "-1"], "top_k must be >= 0 (0 = off), got -1"),
        (["--top-p", "0"], "top_p must be in (0, 1] (1 = off), got 0.0"),
        (["--top-p", "1.5"], "top_p must be in (0, 1] (1 = off), got 1.5"),
        (["--top-p", "nan"], "top_p must be in (0, 1] (1 = off), got nan"),
        (["--max-length", "0"], "max_length must be >= 1 new character, got 0"),
        (["--num-tunes", "0"], "num_tunes must be >= 1, got 0"),
        (["--prime", ""], "prime must not be empty"),
        (
            ["--only-valid", "--num-tunes", "2", "--max-attempts", "1"],
            "--max-attempts 1 is below --num-tunes 2",
        ),
    ],
)
def test_bad_generate_setting(trained, tmp_path, capsys, flags, message):
    assert generate(trained, tmp_path, *flags) == 2
    error = capsys.readouterr().err
    assert message in error
    assert not (tmp_path / "tunes.abc").exists()


@pytest.mark.parametrize("flags", [["--top-k", "many"], ["--max-length", "1e3"]])
def test_generate_flag_not_a_number(trained, tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as exit_info:
        generate(trained, tmp_path, *flags)
    assert exit_info.value.code == 2
    assert f"invalid int value: '{flags[1]}'" in capsys.readouterr().err


def test_temperature_zero_is_greedy(trained, tmp_path):
    # Greedy picks the most likely character, so the seed makes no difference.
    generate(trained, tmp_path / "a", "--temperature", "0", "--seed", "1")
    generate(trained, tmp_path / "b", "--temperature", "0", "--seed", "2")
    first = (tmp_path / "a" / "tunes.abc").read_text()
    assert first == (tmp_path / "b" / "tunes.abc").read_text()


def test_top_k_above_vocabulary_keeps_all(trained, tmp_path):
    generate(trained, tmp_path / "all", "--top-k", "0", "--seed", "3")
    generate(trained, tmp_path / "big", "--top-k", "100000", "--seed", "3")
    first = (tmp_path / "all" / "tunes.abc").read_text()
    assert first == (tmp_path / "big" / "tunes.abc").read_text()


def test_max_length_below_prime_length(trained, tmp_path, capsys):
    # --max-length counts new characters, so a 6-character prime plus 3 is allowed.
    # A tune that did not end with a blank line within them makes the exit status 1.
    prime = "X:1\nT:"
    code = generate(trained, tmp_path, "--prime", prime, "--max-length", "3")
    out = capsys.readouterr().out
    tunes = [(tmp_path / f"tune-0{index}.abc").read_text() for index in range(1, 6)]
    for tune in tunes:
        assert tune.startswith(prime)
        assert len(tune.rstrip()) <= len(prime) + 3
    assert code == 1
    assert "tunes reached --max-length 3 without ending in a blank line" in out
