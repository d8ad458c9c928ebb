"""Read the music lines of a tune into events, bars and diagnostics.

MusicReader takes one line at a time (`read_line`) and does not raise on bad
input (tests/test_parser_fuzz.py checks this on random and mutated tunes):
each fault becomes a Diagnostic and the reader moves on. A bar that held
a fault is marked damaged, so one fault does not also show up as a wrong bar
length. Notes outside chords and grace groups take an inlined fast path,
because they are most of the tokens of a tune.
"""

from __future__ import annotations

from abcrnn.abc.diagnostics import ERROR, WARNING, Diagnostic
from abcrnn.abc.events import GRACE, NOTE, REST, TICKS_PER_WHOLE, Annotation, Event
from abcrnn.abc.fields import FieldsMixin
from abcrnn.abc.lexer import (
    ACCIDENTAL_STEPS,
    DEFAULT_SHORTHANDS,
    LETTER_INDEX,
    LETTER_STEPS,
    TOKEN_RE,
    note_length,
    old_line_break,
)
from abcrnn.abc.marks import MarksMixin
from abcrnn.abc.voice import Voice

# Tokens that may stand inside a chord [...] or a grace group {...}; any other
# token closes the group and is reported as a fault.
# Slurs may start or end on a note inside a chord (`[E4(e4]c2)`), as abcm2ps
# draws them.
_IN_CHORD = frozenset(
    {"note", "tie", "deco", "plusdeco", "shorthand", "chordend", "slur", "slurend"}
)
_IN_GRACE = frozenset({"note", "tie", "deco", "plusdeco", "shorthand", "graceend"})

# Most diagnostics kept per tune, so that garbage input stays fast to report.
MAX_DIAGNOSTICS = 200


def too_many_diagnostics(line: int, column: int) -> Diagnostic:
    """Return the warning that ends a list cut at MAX_DIAGNOSTICS."""
    message = f"more than {MAX_DIAGNOSTICS} faults: the later ones are not reported"
    return Diagnostic(WARNING, "too-many-diagnostics", message, line, column)


# Note token text -> ((letter, octave), letter index, natural pitch,
# written accidental step or None, length numerator, length denominator).
_NOTE_INFO: dict[str, tuple] = {}
_NOTE_INFO_SIZE = 20_000


def _note_info(match) -> tuple:
    """Decode a note token once; later tokens with the same text hit the cache."""
    letter, marks = match.group("letter"), match.group("octave")
    upper = letter.upper()
    octave = (0 if letter == upper else 1) + marks.count("'") - marks.count(",")
    accidental = match.group("acc")
    info = (
        (upper, octave),
        LETTER_INDEX[upper],
        60 + 12 * octave + LETTER_STEPS[upper],
        ACCIDENTAL_STEPS[accidental] if accidental else None,
        *note_length(match.group("num"), match.group("slash"), match.group("den")),
    )
    if len(_NOTE_INFO) < _NOTE_INFO_SIZE:
        _NOTE_INFO[match.group()] = info
    return info


def _pitch(voice: Voice, info: tuple, targets: dict | None) -> int:
    """Return the MIDI pitch of a note and record its written accidental.

    A written accidental comes first, then a tie from the note before (which
    carries its accidental across a bar line), then the accidentals written
    earlier in the bar, then the key signature. By default an accidental in a
    bar applies to its letter in every octave, as the ABC 2.1 default
    `%%propagate-accidentals pitch` (and abc2midi) have it. A tie to this note
    is removed from `targets`.
    """
    pitch_key, letter_index, natural, step, _numerator, _denominator = info
    tied = targets.pop(pitch_key, None) if targets else None
    scope = voice.accidental_scope
    key = letter_index if scope == "pitch" else pitch_key
    if step is not None:
        if scope != "not":
            voice.accidentals[key] = step
    elif tied is not None:
        step = tied[0] - natural
    else:
        step = voice.accidentals.get(key)
        if step is None:
            step = voice.signature[letter_index]
    return natural + step


class MusicReader(FieldsMixin, MarksMixin):
    """Turn music lines into events, tracking each voice on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self.keys: list[tuple[str, int] | None] = []  # (letter, octave) per event
        self.diagnostics: list[Diagnostic] = []
        self.chord_symbols: list[Annotation] = []
        self.annotations: list[Annotation] = []
        self.shorthands = set(DEFAULT_SHORTHANDS)
        self.voices: dict[str, Voice] = {}
        self.voice: Voice | None = None
        self.unknown_end = (0, 0)
        self.inexact = False  # set when a length did not divide into ticks
        # Set when a line ends with a bar line and "\", so that an ending number
        # at the start of the next line belongs to that bar line.
        self.continued_after_bar = False
        self.inexact_reported = False

    def report(self, severity: str, code: str, message: str, line: int, column: int):
        """Record a diagnostic; an error also marks the current bar damaged."""
        voice = self.voice
        bar = None
        if voice is not None:
            bar = voice.bar_number
            if severity == ERROR:
                voice.damaged = True
        count = len(self.diagnostics)
        if count < MAX_DIAGNOSTICS:
            self.diagnostics.append(
                Diagnostic(severity, code, message, line, column, bar)
            )
        elif count == MAX_DIAGNOSTICS:
            self.diagnostics.append(too_many_diagnostics(line, column))

    def read_line(self, text: str, line: int) -> None:
        """Read one music line (`line` counts from 1 in the tune)."""
        self.current_voice()
        position = old_line_break(text)
        if position is not None:
            message = "'!' after a bar line is read as an old line-break mark"
            self.report(WARNING, "old-line-break", message, line, position + 1)
            text = f"{text[:position]} {text[position + 1 :]}"

        last_end = 0
        after_bar = self.continued_after_bar
        self.continued_after_bar = False
        previous_kind = None
        for match in TOKEN_RE.finditer(text):
            kind = match.lastgroup
            if kind == "space":
                continue
            if after_bar and kind == "number" and match.group().isdigit():
                # "|\" ended the line before, so "1" here makes "|1".
                self.voice.mark_section_break()
                after_bar = False
                continue
            after_bar = False
            voice = self.voice
            if kind == "note" and voice.chord is None and voice.grace is None:
                self._plain_note(voice, match, line)
            elif kind == "comment":
                break
            else:
                if voice.chord is not None and kind not in _IN_CHORD:
                    self.close_chord(voice, unclosed=True)
                if voice.grace is not None and kind not in _IN_GRACE:
                    self.close_grace(voice)
                _HANDLERS[kind](self, match, line, match.start() + 1)
            if kind == "continuation":
                self.continued_after_bar = previous_kind == "bar"
            previous_kind = kind
            last_end = match.end()

        voice = self.voice
        if last_end:
            voice.last_position = (line, last_end)
        if voice.chord is not None:
            self.close_chord(voice, unclosed=True)
        if voice.grace is not None:
            self.close_grace(voice)
        if self.inexact and not self.inexact_reported:
            message = "a note length is too fine to be timed exactly"
            self.report(WARNING, "inexact-length", message, line, 1)
            self.inexact_reported = True

    def _plain_note(self, voice: Voice, match, line: int) -> None:
        """Read a note outside chords and grace groups (the parser's hot path)."""
        info = _NOTE_INFO.get(match.group())
        if info is None:
            info = _note_info(match)
        pitch_key, _index, _natural, _step, numerator, denominator = info
        column = match.start() + 1

        # A new element ends the ties of the element before the last one.
        targets = voice.tie_targets
        if targets:
            self.warn_dangling(targets)
        targets = voice.tie_targets = voice.ties
        voice.ties = None
        if not voice.content:
            voice.content = True
            voice.position = (line, column)

        pitch = _pitch(voice, info, targets)
        ticks = voice.unit_ticks * numerator
        if denominator != 1:
            if ticks % denominator:
                self.inexact = True
            ticks //= denominator
        onset = voice.time
        events = self.events
        index = len(events)
        events.append(
            Event(
                NOTE,
                pitch,
                onset,
                ticks,
                voice.bar_number,
                line,
                column,
                voice.name,
            )
        )
        self.keys.append(pitch_key)
        if voice.tuplet is None and voice.broken is None:
            voice.last = (index, onset, ticks)
            voice.time = onset + ticks
        else:
            self.complete(voice, index, ticks)

    def begin_element(self, voice: Voice, line: int, column: int) -> None:
        """Start a chord or rest: settle ties and mark where the bar begins."""
        if voice.tie_targets:
            self.warn_dangling(voice.tie_targets)
        voice.tie_targets = voice.ties
        voice.ties = None
        if not voice.content:
            voice.content = True
            voice.position = (line, column)

    def warn_dangling(self, targets: dict) -> None:
        """Warn about each tie in `targets` that found no note to end on."""
        for _pitch, line, column in targets.values():
            message = "tie is not followed by a note of the same pitch"
            self.report(WARNING, "dangling-tie", message, line, column)
        targets.clear()

    def scale(self, ticks: int, numerator: int, denominator: int) -> int:
        """Return ticks * numerator / denominator, noting when it is inexact."""
        product = ticks * numerator
        if product % denominator:
            self.inexact = True
        return product // denominator

    def complete(self, voice: Voice, first_index: int, ticks: int) -> None:
        """Apply tuplet and broken rhythm to the element just read; advance time."""
        numerator = denominator = 1
        tuplet = voice.tuplet
        if tuplet is not None:
            numerator, denominator = tuplet[1], tuplet[2]
            tuplet[0] -= 1
            if tuplet[0] <= 0:
                voice.tuplet = None
        if voice.broken is not None:
            numerator *= voice.broken[0]
            denominator *= voice.broken[1]
            voice.broken = None
        if numerator != denominator:
            self.scale_events(first_index, numerator, denominator)
            ticks = self.scale(ticks, numerator, denominator)
        voice.last = (first_index, voice.time, ticks)
        voice.time += ticks

    def scale_events(self, first_index: int, numerator: int, denominator: int):
        """Multiply the durations of events[first_index:] by numerator/denominator."""
        events = self.events
        for index in range(first_index, len(events)):
            event = events[index]
            event.duration_ticks = self.scale(
                event.duration_ticks, numerator, denominator
            )

    # Token handlers, called as _on_<kind>(match, line, column).

    def _on_note(self, match, line: int, column: int) -> None:
        """Read a note inside a chord or a grace group."""
        voice = self.voice
        info = _NOTE_INFO.get(match.group()) or _note_info(match)
        pitch_key, _index, _natural, _step, numerator, denominator = info
        grace = voice.grace is not None
        # Grace notes neither end nor start ties.
        pitch = _pitch(voice, info, None if grace else voice.tie_targets)
        ticks = 0 if grace else self.scale(voice.unit_ticks, numerator, denominator)
        kind = GRACE if grace else NOTE
        self.events.append(
            Event(
                kind,
                pitch,
                voice.time,
                ticks,
                voice.bar_number,
                line,
                column,
                voice.name,
            )
        )
        self.keys.append(pitch_key)
        if not grace and voice.chord[2] is None:
            voice.chord[2] = ticks

    def _append_rest(self, voice, ticks: int, line: int, column: int) -> None:
        """Add a rest of `ticks` at the voice's current time; rests have no key."""
        event = Event(
            REST, None, voice.time, ticks, voice.bar_number, line, column, voice.name
        )
        self.events.append(event)
        self.keys.append(None)

    def _on_rest(self, match, line: int, column: int) -> None:
        voice = self.voice
        self.begin_element(voice, line, column)
        numerator, denominator = note_length(
            match.group("rnum"), match.group("rslash"), match.group("rden")
        )
        ticks = self.scale(voice.unit_ticks, numerator, denominator)
        self._append_rest(voice, ticks, line, column)
        self.complete(voice, len(self.events) - 1, ticks)

    def _on_multirest(self, match, line: int, column: int) -> None:
        voice = self.voice
        self.begin_element(voice, line, column)
        count = int(match.group("count") or 1)
        ticks = count * (voice.bar_ticks or TICKS_PER_WHOLE)
        self._append_rest(voice, ticks, line, column)
        voice.rests += count
        voice.time += ticks
        voice.last = None

    def _on_chord(self, match, line: int, column: int) -> None:
        voice = self.voice
        self.begin_element(voice, line, column)
        voice.chord = [line, column, None, len(self.events)]

    def _on_chordend(self, match, line: int, column: int) -> None:
        voice = self.voice
        if voice.chord is None:
            self.report(ERROR, "unmatched-close", "']' closes no chord", line, column)
            return
        self.close_chord(voice, unclosed=False, match=match)

    def close_chord(self, voice: Voice, unclosed: bool, match=None) -> None:
        """End the open chord; its length is that of its first note."""
        chord_line, chord_column, first_ticks, first_index = voice.chord
        voice.chord = None
        if unclosed:
            message = "unclosed chord: '[' has no ']'"
            self.report(ERROR, "unclosed-chord", message, chord_line, chord_column)
        if first_ticks is None:
            if not unclosed:
                message = "empty chord: '[]' contains no notes"
                self.report(ERROR, "empty-chord", message, chord_line, chord_column)
            return
        if match is not None and (match.group("cnum") or match.group("cslash")):
            numerator, denominator = note_length(
                match.group("cnum"), match.group("cslash"), match.group("cden")
            )
            self.scale_events(first_index, numerator, denominator)
            first_ticks = self.scale(first_ticks, numerator, denominator)
        self.complete(voice, first_index, first_ticks)

    def _on_grace(self, match, line: int, column: int) -> None:
        self.voice.grace = (line, column)

    def _on_graceend(self, match, line: int, column: int) -> None:
        if self.voice.grace is None:
            message = "'}' closes no grace notes"
            self.report(ERROR, "unmatched-close", message, line, column)
        self.voice.grace = None

    def close_grace(self, voice: Voice) -> None:
        """Report grace notes that a bar line or line end cut off, and end them."""
        line, column = voice.grace
        voice.grace = None
        message = "unclosed grace notes: '{' has no '}'"
        self.report(ERROR, "unclosed-grace", message, line, column)


# Token kind -> handler; every kind of lexer.TOKEN_RE except note fast path,
# space and comment, which read_line handles itself.
_HANDLERS = {
    name[len("_on_") :]: function
    for cls in (MusicReader, MarksMixin)
    for name, function in vars(cls).items()
    if name.startswith("_on_")
}
