"""ABC to MIDI with abc2midi (abcMIDI), and reading notes back from a MIDI file.

abc2midi runs as a separate program. The `symusic` wheel ships a copy of it, so no
system package is needed. Its exit status is 0 even when it writes nothing, so
`abc_to_midi` judges success by the MIDI file it finds afterwards.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido

from abcrnn.abc.tunes import is_blank, is_music_line, normalise_newlines
from abcrnn.errors import RenderError

ABC2MIDI_TIMEOUT_S = 30.0

# Tracks that abc2midi adds for accompaniment (chord symbols, %%MIDI drum, drone).
# Their first text event carries one of these labels. Notes on them are not written
# in the tune, so `midi_notes` leaves them out by default.
ACCOMPANIMENT_TRACKS = frozenset({"gchord track", "drum track", "drone track"})

INSTALL_HINT = "Install it with `pip install symusic` or `apt-get install abcmidi`"

# abc2midi's diagnostics, e.g. "Warning in line-char 6-17 : Track 0 Bar 1 has 7 time
# units while the time signature has 6". The line is 1-based and the char 0-based.
_MESSAGE = re.compile(
    r"^(?P<kind>Warning|Error)(?: in line-char (?P<line>\d+)-(?P<char>\d+))?\s*:\s*"
    r"(?P<text>.*?)\s*$"
)
_X_LINE = re.compile(r"^X:", re.MULTILINE)


@dataclass(frozen=True)
class AbcMessage:
    """One warning or error that abc2midi printed about a tune.

    `line` and `column` are 1-based positions in the tune text (None when abc2midi
    gave no position).
    """

    kind: str  # "warning" or "error"
    line: int | None
    column: int | None
    text: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.kind}: {self.text}"
        return f"line {self.line}, column {self.column}: {self.kind}: {self.text}"


@dataclass(frozen=True)
class MidiResult:
    """Outcome of converting one tune: `ok` is True when a playable MIDI file exists.

    `reason` explains a failure (empty when ok). `notes` counts the notes
    written in the tune, without abc2midi's accompaniment.
    """

    path: Path
    ok: bool
    reason: str
    messages: tuple[AbcMessage, ...]
    notes: int

    @property
    def errors(self) -> tuple[AbcMessage, ...]:
        """Return the messages abc2midi marked as errors."""
        return tuple(m for m in self.messages if m.kind == "error")

    @property
    def warnings(self) -> tuple[AbcMessage, ...]:
        """Return the messages abc2midi marked as warnings."""
        return tuple(m for m in self.messages if m.kind == "warning")


def find_abc2midi() -> str:
    """Return the path of an abc2midi executable: symusic's copy first, then PATH.

    Raises RenderError with install instructions when neither exists.
    """
    # find_spec locates the package without importing it (symusic is heavy).
    spec = importlib.util.find_spec("symusic")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "abc2midi"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("abc2midi")
    if found:
        return found
    raise RenderError(f"abc2midi was not found. {INSTALL_HINT}")


def parse_messages(output: str) -> tuple[AbcMessage, ...]:
    """Parse abc2midi's printed output into its warnings and errors, in order."""
    messages = []
    for line in output.splitlines():
        match = _MESSAGE.match(line.strip())
        if match is None:
            continue
        line_number = match["line"]
        messages.append(
            AbcMessage(
                kind=match["kind"].lower(),
                line=int(line_number) if line_number else None,
                column=int(match["char"]) + 1 if line_number else None,
                text=match["text"],
            )
        )
    return tuple(messages)


def abc_to_midi(
    tune: str,
    midi_path: str | os.PathLike[str],
    timeout: float = ABC2MIDI_TIMEOUT_S,
) -> MidiResult:
    """Convert one ABC tune to a MIDI file with abc2midi and check what it wrote.

    `tune` starts at its X: line. CRLF and CR line endings become LF. Blank lines
    before the first music line are dropped, because `split_tunes` keeps them inside
    a tune while abc2midi would end the tune there. A blank line after the first
    music line still ends the tune. Message line numbers refer to `tune` as given.

    The folder of `midi_path` must exist. The MIDI file is replaced atomically, and
    only when it parses and contains at least one note. `timeout` is in seconds. A
    tune that cannot be converted returns ok=False and the reason, and leaves
    `midi_path` untouched.
    """
    midi_path = Path(midi_path)
    text, line_numbers = _drop_header_blank_lines(normalise_newlines(tune))
    if len(_X_LINE.findall(text)) > 1:
        reason = "the text contains more than one X: line, so split it into tunes first"
        return _failed(midi_path, reason, ())
    executable = find_abc2midi()

    # Work in a folder beside the target so the final rename stays atomic.
    with tempfile.TemporaryDirectory(prefix=".abc2midi-", dir=midi_path.parent) as work:
        output_file = Path(work) / "tune.mid"
        try:
            output = _run_abc2midi(executable, text, Path(work), timeout)
        except subprocess.TimeoutExpired:
            return _failed(midi_path, f"abc2midi timed out after {timeout:g} s", ())

        messages = _renumber(parse_messages(output), line_numbers)
        problem = _check_midi(output_file)
        if problem:
            return _failed(midi_path, _failure_reason(problem, messages), messages)
        notes = len(midi_notes(output_file))
        os.replace(output_file, midi_path)
    return MidiResult(midi_path, ok=True, reason="", messages=messages, notes=notes)


def _run_abc2midi(executable: str, text: str, work: Path, timeout: float) -> str:
    """Write `text` to work/tune.abc, convert it to work/tune.mid, return the output.

    Raises subprocess.TimeoutExpired after `timeout` seconds.
    """
    (work / "tune.abc").write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    try:
        completed = subprocess.run(
            [executable, "tune.abc", "-o", "tune.mid"],
            cwd=work,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except OSError as error:
        raise RenderError(f"failed to run {executable}: {error}") from error
    return completed.stdout + "\n" + completed.stderr


def _drop_header_blank_lines(text: str) -> tuple[str, list[int]]:
    """Remove blank lines before the first music line of a tune.

    Returns the new text and, for each of its lines, the 1-based line number it had.
    """
    lines = text.split("\n")
    first_music = next(
        (i for i, line in enumerate(lines) if is_music_line(line)), len(lines)
    )
    kept_indices = [
        i for i, line in enumerate(lines) if i >= first_music or not is_blank(line)
    ]
    return "\n".join(lines[i] for i in kept_indices), [i + 1 for i in kept_indices]


def _renumber(
    messages: tuple[AbcMessage, ...], line_numbers: list[int]
) -> tuple[AbcMessage, ...]:
    """Map message lines of the converted text back to lines of the original tune."""
    renumbered = []
    for message in messages:
        line = message.line
        if line is not None and 1 <= line <= len(line_numbers):
            line = line_numbers[line - 1]
        elif line is not None and line_numbers:  # past the last line
            line = line_numbers[-1] + line - len(line_numbers)
        renumbered.append(dataclasses.replace(message, line=line))
    return tuple(renumbered)


def _failed(path: Path, reason: str, messages: tuple[AbcMessage, ...]) -> MidiResult:
    return MidiResult(path, ok=False, reason=reason, messages=messages, notes=0)


def _failure_reason(problem: str, messages: tuple[AbcMessage, ...]) -> str:
    """Join what was wrong with the MIDI file and abc2midi's first error, if any."""
    errors = [m for m in messages if m.kind == "error"]
    if errors:
        return f"{problem} ({errors[0]})"
    return problem


def _check_midi(path: Path) -> str:
    """Return what is wrong with abc2midi's output file, or "" when it is usable."""
    if not path.is_file():
        return "abc2midi wrote no MIDI file"
    if path.stat().st_size == 0:
        return "abc2midi wrote an empty MIDI file"
    try:
        midi = mido.MidiFile(path)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as error:
        return f"abc2midi wrote an unreadable MIDI file: {error}"
    if not any(_is_note_on(m) for track in midi.tracks for m in track):
        return "abc2midi wrote a MIDI file with no notes"
    if not _melody_tracks(midi):
        return "abc2midi wrote only accompaniment, no notes of the tune"
    return ""


def _is_note_on(message: mido.Message) -> bool:
    return message.type == "note_on" and message.velocity > 0


def _track_label(track: mido.MidiTrack) -> str:
    """Return the text of the track's first text event ("" when it has none)."""
    for message in track:
        if message.type == "text":
            return message.text
    return ""


def _melody_tracks(midi: mido.MidiFile) -> list[mido.MidiTrack]:
    """Return the tracks with notes that are not abc2midi accompaniment."""
    return [
        track
        for track in midi.tracks
        if _track_label(track) not in ACCOMPANIMENT_TRACKS
        and any(_is_note_on(m) for m in track)
    ]


def _tempo_map(midi: mido.MidiFile) -> list[tuple[int, float, int]]:
    """Return (tick, seconds, tempo) at each tempo change, starting at tick 0."""
    changes = sorted(
        (tick, message.tempo)
        for track in midi.tracks
        for tick, message in _absolute(track)
        if message.type == "set_tempo"
    )
    tempo_map = [(0, 0.0, 500000)]  # MIDI's default tempo: 120 quarters per minute
    for tick, tempo in changes:
        last_tick, last_seconds, last_tempo = tempo_map[-1]
        seconds = last_seconds + mido.tick2second(
            tick - last_tick, midi.ticks_per_beat, last_tempo
        )
        if tick == last_tick:
            tempo_map[-1] = (tick, seconds, tempo)
        else:
            tempo_map.append((tick, seconds, tempo))
    return tempo_map


def _absolute(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    """Return each message of a track with its absolute time in ticks."""
    tick = 0
    timed = []
    for message in track:
        tick += message.time
        timed.append((tick, message))
    return timed


def _seconds(tick: int, tempo_map: list[tuple[int, float, int]], tpb: int) -> float:
    start_tick, start_seconds, tempo = next(
        entry for entry in reversed(tempo_map) if entry[0] <= tick
    )
    return start_seconds + mido.tick2second(tick - start_tick, tpb, tempo)


def midi_notes(
    midi_path: str | os.PathLike[str], accompaniment: bool = False
) -> list[tuple[int, float, float]]:
    """Read the notes of a MIDI file as (pitch, start_seconds, duration_seconds).

    Notes are sorted by start time, then pitch. Tempo changes are applied. By
    default the tracks abc2midi adds for chord symbols, drums and drones are left
    out, so the list contains the notes written in the tune. A note still sounding at
    the end of its track ends there.

    abc2midi (5.02) starts each note one tick (1/480 quarter) after its beat and
    ends it on the next beat, so starts are late and durations short by one tick.
    """
    midi = mido.MidiFile(midi_path)
    tempo_map = _tempo_map(midi)
    tracks = midi.tracks if accompaniment else _melody_tracks(midi)
    notes = []
    for track in tracks:
        sounding: dict[tuple[int, int], list[int]] = {}
        tick = 0
        for tick, message in _absolute(track):
            if message.type not in ("note_on", "note_off"):
                continue
            key = (message.channel, message.note)
            if _is_note_on(message):
                sounding.setdefault(key, []).append(tick)
            elif sounding.get(key):
                notes.append((message.note, sounding[key].pop(0), tick))
        notes.extend((key[1], on, tick) for key, ons in sounding.items() for on in ons)

    tpb = midi.ticks_per_beat
    timed = []
    for pitch, on, off in notes:
        start = _seconds(on, tempo_map, tpb)
        timed.append((pitch, start, _seconds(off, tempo_map, tpb) - start))
    return sorted(timed, key=lambda note: (note[1], note[0]))


def midi_duration(midi_path: str | os.PathLike[str]) -> float:
    """Return the playing time of a MIDI file in seconds, up to its last event."""
    return float(mido.MidiFile(midi_path).length)
