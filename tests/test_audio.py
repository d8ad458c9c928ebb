"""MIDI to WAV: every backend gives audible audio of the MIDI file's length."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import wave

import mido
import numpy as np
import pytest

from abcrnn import audio
from abcrnn.abc.midi import abc_to_midi, midi_duration
from abcrnn.audio import (
    RELEASE_S,
    available_backends,
    backend_available,
    midi_to_wav,
    read_wav,
    rms,
)
from abcrnn.errors import ConfigError, RenderError

needs_soundfont = pytest.mark.skipif(
    not backend_available("soundfont"),
    reason="tinysoundfont is not installed (pip install --no-deps tinysoundfont)",
)
BOTH_BUILTIN = [pytest.param("soundfont", marks=needs_soundfont), "sine"]

# One bar of eighths and quarters in G major at 120 quarters a minute.
SMALL_TUNE = "X:1\nT:Small\nM:4/4\nL:1/8\nQ:1/4=120\nK:G\nGABc d2B2|\n"
# A single A4 (440 Hz) lasting two seconds, for pitch checks.
LONG_A = "X:1\nT:A\nM:4/4\nL:1/4\nQ:1/4=120\nK:C\nA4|]\n"


@pytest.fixture
def small_midi(tmp_path):
    result = abc_to_midi(SMALL_TUNE, tmp_path / "small.mid")
    assert result.ok, result.reason
    return result.path


def expected_frames(midi_path, sample_rate: int) -> int:
    return round((midi_duration(midi_path) + RELEASE_S) * sample_rate)


def wav_format(path) -> tuple[int, int, int]:
    """Return (channels, sample width in bytes, sample rate) of a WAV file."""
    with wave.open(str(path), "rb") as reader:
        return reader.getnchannels(), reader.getsampwidth(), reader.getframerate()


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[spectrum.argmax()])


@pytest.mark.parametrize("backend", BOTH_BUILTIN)
def test_wav_length_and_loudness(tmp_path, small_midi, backend):
    wav_path = tmp_path / "small.wav"
    assert midi_to_wav(small_midi, wav_path, backend=backend) == backend
    samples, rate = read_wav(wav_path)
    assert rate == 44100
    assert wav_format(wav_path) == (1, 2, 44100)
    assert len(samples) == expected_frames(small_midi, 44100)
    assert rms(samples) > 0.01
    assert np.abs(samples).max() == pytest.approx(audio.PEAK, abs=0.001)


@pytest.mark.parametrize("backend", BOTH_BUILTIN)
def test_wav_pitch_is_a440(tmp_path, backend):
    midi_path = abc_to_midi(LONG_A, tmp_path / "a.mid").path
    midi_to_wav(midi_path, tmp_path / "a.wav", backend=backend, sample_rate=22050)
    samples, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050
    # One second from the middle of the note; frequency bins are 1 Hz apart.
    middle = samples[int(0.3 * rate) : int(1.3 * rate), 0]
    assert dominant_frequency(middle, rate) == pytest.approx(440, rel=0.02)


@needs_soundfont
def test_soundfont_programs_every_channel(tmp_path, monkeypatch):
    import tinysoundfont

    calls = []
    real_select = tinysoundfont.Synth.program_select
    real_change = tinysoundfont.Synth.program_change

    def spy_select(self, channel, font, bank, preset, is_drums=False):
        calls.append(("select", channel, preset, is_drums))
        return real_select(self, channel, font, bank, preset, is_drums)

    def spy_change(self, channel, preset, is_drums=False):
        calls.append(("change", channel, preset, is_drums))
        return real_change(self, channel, preset, is_drums)

    monkeypatch.setattr(tinysoundfont.Synth, "program_select", spy_select)
    monkeypatch.setattr(tinysoundfont.Synth, "program_change", spy_change)
    flute = LONG_A.replace("K:C\n", "K:C\n%%MIDI program 73\n")
    midi_path = abc_to_midi(flute, tmp_path / "flute.mid").path
    midi_to_wav(midi_path, tmp_path / "flute.wav", backend="soundfont")

    selects = [call for call in calls if call[0] == "select"]
    assert [call[1] for call in selects] == list(range(16))
    assert [call[3] for call in selects] == [channel == 9 for channel in range(16)]
    assert ("change", 0, 73, False) in calls


@needs_soundfont
def test_program_changes_the_sound(tmp_path):
    flute = LONG_A.replace("K:C\n", "K:C\n%%MIDI program 73\n")
    for name, tune in (("piano", LONG_A), ("flute", flute)):
        midi_path = abc_to_midi(tune, tmp_path / f"{name}.mid").path
        midi_to_wav(midi_path, tmp_path / f"{name}.wav", backend="soundfont")
    piano, _ = read_wav(tmp_path / "piano.wav")
    flute_audio, _ = read_wav(tmp_path / "flute.wav")
    assert piano.shape == flute_audio.shape
    assert rms(piano - flute_audio) > 0.01


@needs_soundfont
def test_auto_prefers_soundfont(tmp_path, small_midi):
    assert available_backends()[0] == "soundfont"
    assert midi_to_wav(small_midi, tmp_path / "a.wav") == "soundfont"


def test_auto_without_tinysoundfont_uses_sine(tmp_path, small_midi, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def no_tinysoundfont(name, *args):
        return None if name == "tinysoundfont" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_tinysoundfont)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert midi_to_wav(small_midi, tmp_path / "a.wav") == "sine"
    assert rms(read_wav(tmp_path / "a.wav")[0]) > 0.01


@needs_soundfont
def test_auto_skips_backend_that_renders_silence(tmp_path, small_midi, monkeypatch):
    def silent(midi_path, sample_rate):
        return np.zeros((sample_rate, 2), dtype=np.float32)

    monkeypatch.setitem(audio._RENDERERS, "soundfont", silent)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no timidity, fluidsynth
    assert midi_to_wav(small_midi, tmp_path / "a.wav") == "sine"


@needs_soundfont
def test_explicit_silent_backend_raises(tmp_path, small_midi, monkeypatch):
    def silent(midi_path, sample_rate):
        return np.zeros((sample_rate, 2), dtype=np.float32)

    monkeypatch.setitem(audio._RENDERERS, "soundfont", silent)
    with pytest.raises(RenderError, match="soundfont: rendered silence"):
        midi_to_wav(small_midi, tmp_path / "a.wav", backend="soundfont")
    assert not (tmp_path / "a.wav").exists()


@pytest.mark.parametrize(
    ("backend", "install"),
    [
        ("timidity", "apt-get install --no-install-recommends timidity"),
        ("fluidsynth", "apt-get install fluidsynth fluid-soundfont-gm"),
    ],
)
def test_missing_backend_names_install_command(
    tmp_path, small_midi, monkeypatch, backend, install
):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RenderError) as caught:
        midi_to_wav(small_midi, tmp_path / "a.wav", backend=backend)
    assert repr(backend) in str(caught.value)
    assert install in str(caught.value)


def test_missing_soundfont_names_install_command(tmp_path, small_midi, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def no_tinysoundfont(name, *args):
        return None if name == "tinysoundfont" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_tinysoundfont)
    with pytest.raises(RenderError, match="pip install --no-deps tinysoundfont"):
        midi_to_wav(small_midi, tmp_path / "a.wav", backend="soundfont")


def test_unknown_backend_rejected(tmp_path, small_midi):
    with pytest.raises(ConfigError, match="unknown audio backend 'organ'"):
        midi_to_wav(small_midi, tmp_path / "a.wav", backend="organ")


@pytest.mark.parametrize("sample_rate", [0, 7999, 192001])
def test_sample_rate_out_of_range(tmp_path, small_midi, sample_rate):
    with pytest.raises(ConfigError, match=f"sample rate {sample_rate} Hz"):
        midi_to_wav(small_midi, tmp_path / "a.wav", sample_rate=sample_rate)


def test_midi_without_notes_rejected(tmp_path):
    midi = mido.MidiFile()
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("end_of_track", time=480)]))
    midi.save(tmp_path / "empty.mid")
    with pytest.raises(RenderError, match="has no notes"):
        midi_to_wav(tmp_path / "empty.mid", tmp_path / "a.wav")


def test_failed_render_keeps_old_wav(tmp_path, small_midi, monkeypatch):
    def broken(midi_path, sample_rate):
        raise RenderError("synthesizer crashed")

    monkeypatch.setitem(audio._RENDERERS, "sine", broken)
    (tmp_path / "a.wav").write_bytes(b"old")
    with pytest.raises(RenderError, match="sine: synthesizer crashed"):
        midi_to_wav(small_midi, tmp_path / "a.wav", backend="sine")
    assert (tmp_path / "a.wav").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "small.mid"]


# A stand-in for timidity and fluidsynth: writes a stereo 16-bit 440 Hz WAV of
# 1.0 s to the file after `-o` (timidity) or `-F` (fluidsynth), at the rate after
# `-s` or `-r`.
FAKE_SYNTH = """#!{python}
import sys, wave, math, struct
args = sys.argv[1:]
path = args[args.index("-o" if "-o" in args else "-F") + 1]
rate = int(args[args.index("-s" if "-s" in args else "-r") + 1])
frames = b"".join(
    struct.pack("<hh", v, v)
    for v in (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate))
)
with wave.open(path, "wb") as out:
    out.setnchannels(2); out.setsampwidth(2); out.setframerate(rate)
    out.writeframes(frames)
"""


@pytest.fixture
def fake_programs(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("timidity", "fluidsynth"):
        program = folder / name
        program.write_text(FAKE_SYNTH.format(python=sys.executable))
        program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


@pytest.mark.parametrize("backend", ["timidity", "fluidsynth"])
def test_external_program_output_fitted(tmp_path, small_midi, fake_programs, backend):
    wav_path = tmp_path / "out.wav"
    assert midi_to_wav(small_midi, wav_path, backend=backend, sample_rate=16000)
    samples, rate = read_wav(wav_path)
    assert rate == 16000
    assert wav_format(wav_path) == (1, 2, 16000)
    # The fake writes 1.0 s; the result is padded to the MIDI length plus release.
    assert len(samples) == expected_frames(small_midi, 16000)
    assert rms(samples[:16000]) > 0.1
    assert rms(samples[16000:]) == 0.0


def test_external_program_failure_reported(tmp_path, small_midi, fake_programs):
    (fake_programs / "timidity").write_text("#!/bin/sh\necho 'no patch' >&2\nexit 3\n")
    with pytest.raises(RenderError, match="timidity: exit status 3: no patch"):
        midi_to_wav(small_midi, tmp_path / "a.wav", backend="timidity")


def test_timidity_without_config_uses_bundled_font(tmp_path, small_midi, fake_programs):
    # Fails like Debian's timidity without its recommended sound font, unless a
    # configuration file is given with -c.
    fake = fake_programs / "timidity"
    script = fake.read_text().replace(
        "args = sys.argv[1:]\n",
        "args = sys.argv[1:]\n"
        "if '-c' not in args:\n"
        "    sys.exit('timidity: Error reading configuration file.')\n"
        "assert 'soundfont' in open(args[args.index('-c') + 1]).read()\n",
    )
    fake.write_text(script)
    assert midi_to_wav(small_midi, tmp_path / "a.wav", backend="timidity")
    assert rms(read_wav(tmp_path / "a.wav")[0]) > 0.1


@pytest.mark.skipif(shutil.which("timidity") is None, reason="timidity not installed")
def test_real_timidity_pitch(tmp_path):
    midi_path = abc_to_midi(LONG_A, tmp_path / "a.mid").path
    midi_to_wav(midi_path, tmp_path / "a.wav", backend="timidity", sample_rate=22050)
    samples, rate = read_wav(tmp_path / "a.wav")
    assert len(samples) == expected_frames(midi_path, 22050)
    middle = samples[int(0.3 * rate) : int(1.3 * rate), 0]
    assert dominant_frequency(middle, rate) == pytest.approx(440, rel=0.02)


def test_read_wav_24_bit(tmp_path):
    values = [0, 2**22, -(2**23)]  # 0, half scale, full negative scale
    data = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    with wave.open(str(tmp_path / "a.wav"), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(3)
        writer.setframerate(8000)
        writer.writeframes(data)
    samples, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000
    assert samples[:, 0].tolist() == [0.0, 0.5, -1.0]
