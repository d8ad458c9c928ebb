"""MIDI to WAV with the best synthesizer available, plus a plain fallback.

Backends, in the order "auto" tries them:

* "soundfont": tinysoundfont with the General MIDI sound font TimGM6mb.sf2 that ships
  inside the pretty_midi wheel. Real instrument sounds, no system packages.
* "timidity" and "fluidsynth": the Debian programs, run as subprocesses. Each uses
  a system sound font when one is configured, else TimGM6mb.sf2.
* "sine": pretty_midi's sine-tone synthesizer. Right pitches, plain sound, always
  works where pretty_midi is installed.

Every WAV is mono, 16-bit, peak-normalised and exactly `midi_duration + RELEASE_S`
seconds long, whatever the backend, so that notes can fade out after the last event.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import mido
import numpy as np

from abcrnn.abc.midi import midi_duration, midi_notes
from abcrnn.atomic import atomic_path
from abcrnn.errors import ConfigError, RenderError

BACKENDS = ("soundfont", "timidity", "fluidsynth", "sine")
RELEASE_S = 0.5  # seconds of audio kept after the MIDI file's last event
PEAK = 0.9  # peak amplitude after normalisation, as a fraction of full scale
SILENCE_RMS = 1e-4  # RMS below this (full scale = 1.0) counts as silence
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
SUBPROCESS_TIMEOUT_S = 120.0
DRUM_CHANNEL = 9  # General MIDI percussion channel (channel 10 counted from 1)

INSTALL = {
    "soundfont": "pip install pretty_midi && pip install --no-deps tinysoundfont",
    "timidity": "apt-get install --no-install-recommends timidity",
    "fluidsynth": "apt-get install fluidsynth fluid-soundfont-gm",
    "sine": "pip install pretty_midi",
}

# General MIDI sound fonts that Debian packages install, for fluidsynth.
SYSTEM_SOUND_FONTS = (
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
)


def bundled_sound_font() -> Path | None:
    """Return the path of TimGM6mb.sf2 inside the pretty_midi package, if installed."""
    spec = importlib.util.find_spec("pretty_midi")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "TimGM6mb.sf2"
        if candidate.is_file():
            return candidate
    return None


def backend_available(backend: str) -> bool:
    """Return True when `backend` (one of BACKENDS) can run on this machine."""
    if backend == "soundfont":
        found = importlib.util.find_spec("tinysoundfont") is not None
        return found and bundled_sound_font() is not None
    if backend == "timidity":
        return shutil.which("timidity") is not None
    if backend == "fluidsynth":
        return shutil.which("fluidsynth") is not None and _fluidsynth_font() is not None
    if backend == "sine":
        return importlib.util.find_spec("pretty_midi") is not None
    raise ConfigError(
        f"unknown audio backend {backend!r}: choose one of {', '.join(BACKENDS)}"
    )


def available_backends() -> list[str]:
    """Return the backends that can run here, best first."""
    return [name for name in BACKENDS if backend_available(name)]


def resolve_backends(backend: str) -> list[str]:
    """Return the backends to try for a request: "auto" or one name from BACKENDS.

    Raises ConfigError for an unknown name, and RenderError with the install command
    when the requested backend (or, for "auto", every backend) is missing.
    """
    if backend == "auto":
        names = available_backends()
        if not names:
            raise RenderError(
                f"no audio backend is installed. Install one with `{INSTALL['sine']}`"
            )
        return names
    if not backend_available(backend):
        raise RenderError(
            f"audio backend {backend!r} is not installed. "
            f"Install it with `{INSTALL[backend]}` or use --backend auto"
        )
    return [backend]


def midi_to_wav(
    midi_path: str | os.PathLike[str],
    wav_path: str | os.PathLike[str],
    backend: str = "auto",
    sample_rate: int = 44100,
) -> str:
    """Render a MIDI file to a WAV file and return the name of the backend used.

    `sample_rate` is in Hz. With backend="auto" the backends are tried best first,
    and the next one is used when one fails or renders silence. The WAV is written
    atomically. Raises RenderError when the MIDI file has no notes or every backend
    tried fails, naming each backend's failure.
    """
    check_sample_rate(sample_rate)
    names = resolve_backends(backend)
    if not midi_notes(midi_path, accompaniment=True):
        raise RenderError(f"MIDI file {midi_path} has no notes to render")
    frames = round((midi_duration(midi_path) + RELEASE_S) * sample_rate)

    failures = []
    for name in names:
        try:
            audio = _RENDERERS[name](Path(midi_path), sample_rate)
        except RenderError as error:
            failures.append(f"{name}: {error}")
            continue
        audio = _fit_length(_to_mono(audio), frames)
        if rms(audio) < SILENCE_RMS:
            failures.append(f"{name}: rendered silence")
            continue
        write_wav(wav_path, _normalise(audio), sample_rate)
        return name
    raise RenderError(f"failed to render {midi_path}: " + "; ".join(failures))


def check_sample_rate(sample_rate: int) -> None:
    """Raise ConfigError unless `sample_rate` (Hz) is in the supported range."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ConfigError(
            f"sample rate {sample_rate} Hz is out of range: "
            f"use {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, e.g. 44100"
        )


def rms(audio: np.ndarray) -> float:
    """Return the root mean square of samples scaled to full scale 1.0."""
    if audio.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def _to_mono(audio: np.ndarray) -> np.ndarray:
    """Average (frames, channels) audio to (frames,) float32."""
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    # Column sums: numpy's mean over the short axis is several times slower.
    mono = audio[:, 0].astype(np.float32)
    for channel in range(1, audio.shape[1]):
        mono += audio[:, channel]
    return mono / np.float32(audio.shape[1])


def _fit_length(audio: np.ndarray, frames: int) -> np.ndarray:
    """Cut or zero-pad audio to exactly `frames` samples."""
    if len(audio) >= frames:
        return audio[:frames]
    return np.concatenate([audio, np.zeros(frames - len(audio), dtype=audio.dtype)])


def _normalise(audio: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio)))
    return audio * (PEAK / peak) if peak > 0 else audio


def write_wav(
    wav_path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int
) -> None:
    """Write (frames,) float audio in [-1, 1] as a mono 16-bit WAV file, atomically."""
    samples = np.clip(audio, -1.0, 1.0) * 32767.0
    data = np.round(samples).astype("<i2").tobytes()
    with atomic_path(wav_path) as temporary:
        with wave.open(str(temporary), "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(sample_rate)
            writer.writeframes(data)


def read_wav(wav_path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file as (frames, channels) float32 in [-1, 1] and its rate in Hz.

    Raises RenderError for a file the stdlib `wave` module cannot read (for example
    floating-point WAV).
    """
    try:
        with wave.open(str(wav_path), "rb") as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            data = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as error:
        raise RenderError(f"invalid WAV file {wav_path}: {error}") from error
    return _pcm_to_float(data, width).reshape(-1, channels), rate


def _pcm_to_float(data: bytes, width: int) -> np.ndarray:
    """Convert little-endian PCM bytes of `width` bytes a sample to float32."""
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 3:  # 24-bit: widen each sample to 32 bits
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3)
        padded = np.zeros((len(raw), 4), np.uint8)
        padded[:, 1:] = raw
        return padded.view("<i4").ravel().astype(np.float32) / 2.0**31
    if width in (2, 4):
        values = np.frombuffer(data, f"<i{width}").astype(np.float32)
        return values / float(2 ** (8 * width - 1))
    raise RenderError(f"unsupported WAV sample width: {width} bytes")


def _render_soundfont(midi_path: Path, sample_rate: int) -> np.ndarray:
    """Play the MIDI events into tinysoundfont and return (frames, 2) audio."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    font_path = bundled_sound_font()
    try:
        font = synth.sfload(str(font_path))
    except (OSError, RuntimeError, tinysoundfont.SoundFontException) as error:
        raise RenderError(f"failed to load sound font {font_path}: {error}") from error
    # A channel without a preset stays silent, so give every channel the General
    # MIDI default (program 0, drums on channel 10) before the file's own changes.
    for channel in range(16):
        synth.program_select(channel, font, 0, 0, is_drums=channel == DRUM_CHANNEL)

    blocks = []
    rendered = 0
    seconds = 0.0
    # Iterating a MidiFile merges its tracks and gives each message's time as
    # seconds since the previous message, with tempo changes applied.
    for message in mido.MidiFile(midi_path):
        seconds += message.time
        due = round(seconds * sample_rate)
        if due > rendered:
            blocks.append(_generate(synth, due - rendered))
            rendered = due
        _send(synth, message)
    blocks.append(_generate(synth, round(RELEASE_S * sample_rate)))
    return np.concatenate(blocks)


def _generate(synth, frames: int) -> np.ndarray:
    """Render `frames` frames of stereo float32 audio from the synth."""
    buffer = synth.generate_simple(frames)
    return np.frombuffer(buffer, dtype=np.float32).reshape(-1, 2).copy()


def _send(synth, message: mido.Message) -> None:
    """Send one channel message to the tinysoundfont synth, ignoring meta messages."""
    if message.type == "note_on" and message.velocity > 0:
        synth.noteon(message.channel, message.note, message.velocity)
    elif message.type in ("note_on", "note_off"):
        synth.noteoff(message.channel, message.note)
    elif message.type == "program_change":
        drums = message.channel == DRUM_CHANNEL
        try:
            synth.program_change(message.channel, message.program, drums)
        except RuntimeError:
            # NOTE: a program the sound font lacks keeps the channel's previous one.
            pass
    elif message.type == "control_change":
        synth.control_change(message.channel, message.control, message.value)
    elif message.type == "pitchwheel":  # mido: -8192..8191, synth: 0..16383
        synth.pitchbend(message.channel, message.pitch + 8192)


def _render_sine(midi_path: Path, sample_rate: int) -> np.ndarray:
    """Synthesize sine tones with pretty_midi (drum notes are left out)."""
    import pretty_midi

    return pretty_midi.PrettyMIDI(str(midi_path)).synthesize(fs=sample_rate)


def _render_timidity(midi_path: Path, sample_rate: int) -> np.ndarray:
    """Render with timidity's own configuration, else with pretty_midi's font.

    Debian's timidity installed without its recommended packages has a
    configuration that names a missing sound font, and then exits with status 1.
    """
    command = ["timidity", "-Ow", "-s", str(sample_rate), "-o", "{wav}", str(midi_path)]
    try:
        return _render_with_program(command, sample_rate)
    except RenderError as error:
        font = bundled_sound_font()
        if font is None or "configuration" not in str(error):
            raise
    with tempfile.TemporaryDirectory(prefix="abcrnn-timidity-") as work:
        config = Path(work) / "timidity.cfg"
        config.write_text(f'soundfont "{font}"\n', encoding="utf-8")
        return _render_with_program(
            ["timidity", "-c", str(config), *command[1:]], sample_rate
        )


def _render_fluidsynth(midi_path: Path, sample_rate: int) -> np.ndarray:
    font = _fluidsynth_font()
    command = ["fluidsynth", "-ni", "-F", "{wav}", "-r", str(sample_rate)]
    return _render_with_program([*command, str(font), str(midi_path)], sample_rate)


def _fluidsynth_font() -> Path | None:
    """Return a system General MIDI sound font, else the one in pretty_midi."""
    for name in SYSTEM_SOUND_FONTS:
        if Path(name).is_file():
            return Path(name)
    return bundled_sound_font()


def _render_with_program(command: list[str], sample_rate: int) -> np.ndarray:
    """Run a synthesizer program and read the WAV file it writes.

    The item "{wav}" of `command` is replaced by the output path.
    """
    with tempfile.TemporaryDirectory(prefix="abcrnn-audio-") as work:
        wav = os.path.join(work, "out.wav")
        command = [wav if part == "{wav}" else part for part in command]
        try:
            completed = subprocess.run(
                command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as error:
            raise RenderError(f"timed out after {SUBPROCESS_TIMEOUT_S:g} s") from error
        except OSError as error:
            raise RenderError(f"failed to run {command[0]}: {error}") from error
        if completed.returncode != 0 or not os.path.isfile(wav):
            detail = (completed.stderr or completed.stdout).strip()[-300:]
            raise RenderError(f"exit status {completed.returncode}: {detail}")
        audio, rate = read_wav(wav)
    if rate != sample_rate:
        raise RenderError(f"wrote {rate} Hz instead of the requested {sample_rate} Hz")
    return audio


_RENDERERS: dict[str, Callable[[Path, int], np.ndarray]] = {
    "soundfont": _render_soundfont,
    "timidity": _render_timidity,
    "fluidsynth": _render_fluidsynth,
    "sine": _render_sine,
}
