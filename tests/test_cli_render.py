"""`abcrnn render`: one line per tune, the backend, the index page, exit status."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from abcrnn.audio import available_backends
from abcrnn.cli import main

GOOD = "X:1\nT:Small\nM:4/4\nL:1/8\nQ:1/4=120\nK:G\nGABc d2B2|\n"
# A tune with a header and no notes: abc2midi cannot make a playable MIDI file.
NO_NOTES = "X:2\nT:Nothing\nM:6/8\nL:1/8\nK:D\n"


@pytest.fixture
def abc_file(tmp_path):
    path = tmp_path / "set.abc"
    path.write_text(GOOD + "\n" + NO_NOTES)
    return path


def test_render_reports_each_tune(abc_file, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["render", str(abc_file), "--out", str(out), "--backend", "sine"])
    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    assert lines == [
        "set-01  ok  Small (2.0 s, sine)",
        "set-02  FAILED  Nothing: abc2midi wrote a MIDI file with no notes",
        "audio backend: sine",
        f"index: {out / 'index.html'}",
        "1 of 2 tunes rendered, 1 failed",
    ]
    assert (out / "set-01.wav").is_file()
    assert (out / "index.html").is_file()


def test_render_all_ok_writes_beside_file(tmp_path, capsys):
    path = tmp_path / "one.abc"
    path.write_text(GOOD)
    status = main(["render", str(path), "--sample-rate", "22050"])
    output = capsys.readouterr().out
    assert status == 0
    assert f"audio backend: {available_backends()[0]}" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index.html",
        "one-01.abc",
        "one-01.mid",
        "one-01.wav",
        "one.abc",
    ]


def test_render_missing_file_exits_2(tmp_path, capsys):
    status = main(["render", str(tmp_path / "missing.abc")])
    assert status == 2
    assert "ABC file not found or not a file" in capsys.readouterr().err


def test_render_file_without_tunes_exits_2(tmp_path, capsys):
    path = tmp_path / "empty.abc"
    path.write_text("% only a comment\n")
    assert main(["render", str(path)]) == 2
    assert "no tunes found" in capsys.readouterr().err


def test_render_missing_backend_exits_2(abc_file, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["render", str(abc_file), "--backend", "fluidsynth"]) == 2
    error = capsys.readouterr().err
    assert "audio backend 'fluidsynth' is not installed" in error
    assert "apt-get install fluidsynth" in error


def test_render_bad_sample_rate_exits_2(abc_file, capsys):
    assert main(["render", str(abc_file), "--sample-rate", "100"]) == 2
    assert "sample rate 100 Hz is out of range" in capsys.readouterr().err


def test_render_strict_fails_on_abc2midi_error(tmp_path, capsys):
    path = tmp_path / "chord.abc"
    path.write_text("X:1\nT:Unclosed\nM:3/4\nL:1/8\nK:C\nc2 B2 A2|[Ac4 B2|G2 F2 E2|]\n")
    assert main(["render", str(path), "--backend", "sine"]) == 0
    assert "abc2midi: 1 error(s)" in capsys.readouterr().out
    assert main(["render", str(path), "--backend", "sine", "--strict"]) == 1
    assert "FAILED  Unclosed: abc2midi reported an error" in capsys.readouterr().out


def test_render_help_names_defaults(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["render", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: auto)" in text
    assert "WAV sample rate in Hz (default: 44100)" in text


def test_backend_choices_match_audio():
    from abcrnn.audio import BACKENDS
    from abcrnn.commands.render import BACKEND_CHOICES

    assert BACKEND_CHOICES == ("auto", *BACKENDS)


def test_render_command_module_imports_light():
    code = (
        "import sys, abcrnn.commands.render; "
        "print(sorted(m for m in ('mido', 'numpy', 'pretty_midi') if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[]"
