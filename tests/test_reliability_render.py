"""Failing converters: each failed tune gets a reason, the others still render."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from abcrnn import audio
from abcrnn.abc import midi
from abcrnn.checkpoint import save_checkpoint
from abcrnn.cli import main
from abcrnn.errors import RenderError
from abcrnn.model import CharRNN, ModelConfig
from abcrnn.render import render_tunes
from abcrnn.vocabulary import Vocabulary

# Three tunes that abc2midi converts; the fake converter below fails "Silent".
TUNES = [
    "X:1\nT:First\nM:4/4\nL:1/8\nK:G\nGABc d2B2|c2A2 G4|]",
    "X:2\nT:Silent\nM:3/4\nL:1/4\nK:D\nF A d|e3|]",
    "X:3\nT:Third\nM:2/4\nL:1/8\nK:C\nCDEF|G4|]",
]
ABC_FILE_TEXT = "\n\n".join(TUNES) + "\n"

# A stand-in for abc2midi, called as `abc2midi tune.abc -o tune.mid`. For the tune
# titled "Silent" it prints an error, writes no MIDI file and exits with 0, as
# abc2midi does. Other tunes go to the real program.
FAKE_ABC2MIDI = """#!/bin/sh
if grep -q '^T:Silent' "$1"; then
    echo "Error in line-char 6-0 : fake converter wrote nothing"
    exit 0
fi
exec {real} "$@"
"""


@pytest.fixture
def fake_abc2midi(tmp_path) -> Path:
    """Write the fake abc2midi into tmp_path/bin and return its path."""
    folder = tmp_path / "bin"
    folder.mkdir()
    path = folder / "abc2midi"
    path.write_text(FAKE_ABC2MIDI.format(real=midi.find_abc2midi()))
    path.chmod(0o755)
    return path


def hide_symusic(tmp_path) -> Path:
    """Return a folder with an empty `symusic` package that hides its abc2midi."""
    folder = tmp_path / "stub"
    (folder / "symusic").mkdir(parents=True)
    (folder / "symusic" / "__init__.py").write_text("")
    return folder


def run_render(tmp_path, path_dirs: list[Path], *flags: str):
    """Run `python -m abcrnn render` with only `path_dirs` on PATH."""
    abc_file = tmp_path / "set.abc"
    abc_file.write_text(ABC_FILE_TEXT)
    env = os.environ | {
        "PATH": os.pathsep.join(str(folder) for folder in path_dirs),
        "PYTHONPATH": str(hide_symusic(tmp_path)),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    argv = [sys.executable, "-m", "abcrnn", "render", str(abc_file), *flags]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def test_fake_converter_on_path_fails_one_tune(tmp_path, fake_abc2midi):
    completed = run_render(
        tmp_path,
        [fake_abc2midi.parent, Path("/usr/bin"), Path("/bin")],
        "--backend",
        "sine",
    )
    lines = completed.stdout.splitlines()
    assert "Traceback" not in completed.stderr
    assert completed.returncode == 1
    assert lines[0].startswith("set-01  ok  First (")
    assert lines[1] == (
        "set-02  FAILED  Silent: abc2midi wrote no MIDI file (line 6, column 1: "
        "error: fake converter wrote nothing)"
    )
    assert lines[2].startswith("set-03  ok  Third (")
    assert lines[-1] == "2 of 3 tunes rendered, 1 failed"
    assert (tmp_path / "set-03.wav").is_file()
    assert not (tmp_path / "set-02.mid").exists()


def test_converter_missing_from_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    completed = run_render(tmp_path, [empty])
    assert "Traceback" not in completed.stderr
    assert completed.returncode == 2
    assert completed.stderr == (
        "abcrnn render: error: abc2midi was not found. Install it with `pip install "
        "symusic` or `apt-get install abcmidi`\n"
    )


def test_converter_missing_by_finder(tmp_path, monkeypatch, capsys):
    def not_found():
        raise RenderError(f"abc2midi was not found. {midi.INSTALL_HINT}")

    monkeypatch.setattr(midi, "find_abc2midi", not_found)
    abc_file = tmp_path / "set.abc"
    abc_file.write_text(ABC_FILE_TEXT)
    assert main(["render", str(abc_file)]) == 2
    assert "abc2midi was not found. Install it with" in capsys.readouterr().err


def test_fake_converter_by_finder(tmp_path, monkeypatch, fake_abc2midi):
    monkeypatch.setattr(midi, "find_abc2midi", lambda: str(fake_abc2midi))
    report = render_tunes(TUNES, tmp_path / "out", backend="sine")
    assert [tune.ok for tune in report.tunes] == [True, False, True]
    assert report.tunes[1].reason.startswith("abc2midi wrote no MIDI file")
    assert report.tunes[1].midi_path is None
    assert report.tunes[2].wav_path.is_file()
    assert report.failed == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("silence", "sine: rendered silence"), ("crash", "sine: synthesizer crashed")],
)
def test_synthesizer_fails_one_tune(tmp_path, monkeypatch, capsys, fault, reason):
    real = audio._RENDERERS["sine"]

    def synthesize(midi_path, sample_rate):
        if midi_path.name.endswith("-02.mid"):
            if fault == "crash":
                raise RenderError("synthesizer crashed")
            return np.zeros(sample_rate)
        return real(midi_path, sample_rate)

    monkeypatch.setitem(audio._RENDERERS, "sine", synthesize)
    abc_file = tmp_path / "set.abc"
    abc_file.write_text(ABC_FILE_TEXT)
    assert main(["render", str(abc_file), "--backend", "sine"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        f"set-02  FAILED  Silent: failed to render {tmp_path / 'set-02.mid'}: {reason}"
    )
    assert lines[-1] == "2 of 3 tunes rendered, 1 failed"
    assert (tmp_path / "set-02.mid").is_file()
    assert not (tmp_path / "set-02.wav").exists()
    assert (tmp_path / "set-03.wav").is_file()


# `abcrnn generate` renders its tunes too, and its exit status reports failures.


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """Save a model that always predicts a newline, so each tune ends at once.

    Greedy sampling from the default prime "X:1\\n" then gives the tune "X:1", which
    finishes, so the exit status depends on rendering alone.
    """
    vocab = Vocabulary.from_text(ABC_FILE_TEXT)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), embedding_dim=4, hidden_size=8))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[vocab.encode("\n")[0]] = 10.0
    path = tmp_path / "newlines.pt"
    save_checkpoint(
        path, model=model, vocabulary=vocab.to_dict(), train_config={}, step=0
    )
    return path


def generate(checkpoint, out):
    argv = ["generate", str(checkpoint), "--out", str(out), "--num-tunes", "2"]
    return main(argv + ["--max-length", "20", "--device", "cpu", "--temperature", "0"])


def test_generate_exit_status_on_failed_render(
    tmp_path, monkeypatch, checkpoint, capsys
):
    nothing = tmp_path / "writes-nothing"
    nothing.write_text("#!/bin/sh\nexit 0\n")
    nothing.chmod(0o755)
    monkeypatch.setattr(midi, "find_abc2midi", lambda: str(nothing))
    assert generate(checkpoint, tmp_path / "out") == 1
    out = capsys.readouterr().out
    assert "tune 1: not rendered: abc2midi wrote no MIDI file" in out
    assert "2 of 2 tunes failed to render" in out
    assert (tmp_path / "out" / "tunes.abc").read_text() == "X:1\n\nX:1\n"


def test_generate_exit_status_without_converter(
    tmp_path, monkeypatch, checkpoint, capsys
):
    def not_found():
        raise RenderError(f"abc2midi was not found. {midi.INSTALL_HINT}")

    monkeypatch.setattr(midi, "find_abc2midi", not_found)
    assert generate(checkpoint, tmp_path / "out") == 1
    out = capsys.readouterr().out
    assert "rendering failed: abc2midi was not found." in out
    assert "pass --no-render to skip rendering" in out
    assert (tmp_path / "out" / "tunes.abc").read_text() == "X:1\n\nX:1\n"
