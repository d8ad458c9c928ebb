"""Events, bars and annotations of a parsed tune, and the tick unit of their times.

Times are integer ticks, TICKS_PER_WHOLE to a whole note, so that the parser
adds integers on its hot path. `onset` and `duration` give exact Fractions of a
whole note. A length is exact when its denominator divides TICKS_PER_WHOLE
(2**12 * 3**3 * 5 * 7 * 11), which covers units down to 1/4096 and tuplets of
3, 5, 7 and 9 notes. The parser warns once per tune when a length is not exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

from abcrnn.abc.diagnostics import ERROR, Diagnostic
from abcrnn.abc.keys import Key, Meter

TICKS_PER_WHOLE = 2**12 * 3**3 * 5 * 7 * 11

NOTE = "note"
REST = "rest"
GRACE = "grace"


class Event:
    """A written note, rest or grace note.

    kind is "note", "rest" or "grace" (grace notes take no time). pitch is a MIDI
    number (ABC `C` = middle C = 60), None for rests. onset_ticks and
    duration_ticks are in ticks (see TICKS_PER_WHOLE). `tie` is True when the
    note is tied to the next note of the same pitch. bar counts from 1 in its
    voice; line and column count from 1 in the tune text.
    """

    __slots__ = (
        "kind",
        "pitch",
        "onset_ticks",
        "duration_ticks",
        "bar",
        "line",
        "column",
        "voice",
        "tie",
    )

    # A plain slotted class rather than a dataclass: the parser creates one per
    # note and changes durations in place (broken rhythm, tuplets, chords).
    def __init__(
        self,
        kind: str,
        pitch: int | None,
        onset_ticks: int,
        duration_ticks: int,
        bar: int,
        line: int,
        column: int,
        voice: str,
    ) -> None:
        self.kind = kind
        self.pitch = pitch
        self.onset_ticks = onset_ticks
        self.duration_ticks = duration_ticks
        self.bar = bar
        self.line = line
        self.column = column
        self.voice = voice
        self.tie = False

    @property
    def onset(self) -> Fraction:
        """Start time in whole notes from the start of the voice."""
        return Fraction(self.onset_ticks, TICKS_PER_WHOLE)

    @property
    def duration(self) -> Fraction:
        """Length in whole notes (0 for grace notes)."""
        return Fraction(self.duration_ticks, TICKS_PER_WHOLE)

    def __repr__(self) -> str:
        return (
            f"Event({self.kind}, pitch={self.pitch}, onset={self.onset}, "
            f"duration={self.duration}, bar={self.bar}, line={self.line}, "
            f"column={self.column}, voice={self.voice!r}, tie={self.tie})"
        )


class Bar(NamedTuple):
    """One bar of one voice, as measured between bar lines.

    ticks is the time its notes and rests fill. expected_ticks is the length the
    meter requires, or None when the meter is free or changes inside the bar. A bar
    opens a section when it follows the start of the voice, a repeat sign, a
    double bar or an ending mark, and closes one when such a sign or the end of
    the voice follows it. `damaged` bars held a syntax error, so their length
    means nothing. `rests` is the count of a multi-bar rest such as `Z4`.
    `bar_line` is False for a last bar that no bar line ends.
    """

    voice: str
    number: int
    line: int
    column: int
    ticks: int
    expected_ticks: int | None
    opens_section: bool
    closes_section: bool
    damaged: bool
    rests: int = 0
    bar_line: bool = True

    @property
    def duration(self) -> Fraction:
        """Filled time in whole notes."""
        return Fraction(self.ticks, TICKS_PER_WHOLE)


@dataclass(frozen=True)
class Annotation:
    """A quoted string: a chord symbol such as "Am", or text placed with ^_<>@."""

    text: str
    line: int
    column: int


@dataclass(frozen=True)
class ParsedTune:
    """The events, bars and diagnostics of one tune.

    header maps each header field letter to its first value. key and meter are
    those of the header (meter None: free or missing). events lists the events
    of every voice, in the order of the text.
    """

    header: dict[str, str]
    key: Key | None
    meter: Meter | None
    events: list[Event]
    bars: list[Bar]
    diagnostics: list[Diagnostic]
    chord_symbols: list[Annotation] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    voices: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """The first T: field, or "" when there is none."""
        return self.header.get("T", "")

    @property
    def notes(self) -> list[Event]:
        """Written notes (chord notes included, grace notes and rests left out)."""
        return [event for event in self.events if event.kind == NOTE]

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics whose severity is "error"."""
        return [item for item in self.diagnostics if item.severity == ERROR]


def played_notes(events: Iterable[Event]) -> list[tuple[int, Fraction, Fraction]]:
    """Merge tied notes and return (pitch, onset, duration) in whole notes.

    A note whose `tie` flag is set is joined with the next note of the same
    pitch in the same voice. Rests and grace notes are left out. The order is
    that of the text, so voices follow one another.
    """
    played: list[list] = []
    open_ties: dict[tuple[str, int], list] = {}
    for event in events:
        if event.kind != NOTE:
            continue
        key = (event.voice, event.pitch)
        held = open_ties.pop(key, None)
        if held is not None and held[1] + held[2] == event.onset_ticks:
            held[2] += event.duration_ticks
            entry = held
        else:
            entry = [event.pitch, event.onset_ticks, event.duration_ticks]
            played.append(entry)
        if event.tie:
            open_ties[key] = entry
    return [
        (pitch, Fraction(onset, TICKS_PER_WHOLE), Fraction(length, TICKS_PER_WHOLE))
        for pitch, onset, length in played
    ]
