"""The state the parser keeps for each voice while it reads the music."""

from __future__ import annotations

from abcrnn.abc.events import TICKS_PER_WHOLE, Bar
from abcrnn.abc.keys import Meter


def meter_ticks(meter: Meter | None) -> int | None:
    """Return the length of one bar in ticks, or None for free meter."""
    if meter is None:
        return None
    return TICKS_PER_WHOLE * meter.numerator // meter.denominator


class Voice:
    """Key, meter, time and open constructs (chord, slurs, tuplet...) of one voice.

    Times are in ticks. Key changes, accidentals and open slurs stay inside the
    voice and do not affect any other voice.
    """

    def __init__(
        self, name: str, signature: tuple[int, ...], meter: Meter | None, unit: int
    ) -> None:
        self.name = name
        self.signature = signature  # alterations of C..B in semitones
        self.accidental_scope = "pitch"  # %%propagate-accidentals: pitch|octave|not
        self.meter = meter
        self.bar_ticks = meter_ticks(meter)
        self.unit_ticks = unit
        self.time = 0
        self.bars: list[Bar] = []
        self.bar_number = 1
        self._start_bar(opens_section=True)
        # Ties keyed by (letter, octave): {key: (pitch, line, column)}. `ties`
        # collects the ties after the element being read, and `tie_targets`
        # contains those that the element being read may end. None: no ties.
        self.ties: dict | None = None
        self.tie_targets: dict | None = None
        # (first event index, onset, duration) of the last note, chord or rest
        self.last: tuple[int, int, int] | None = None
        self.broken: tuple[int, int] | None = None  # factor for the next element
        self.broken_at = (1, 1)  # (line, column) of the last broken rhythm mark
        self.tuplet: list[int] | None = None  # [left, q, p, line, column]
        self.chord: list | None = None  # [line, column, first ticks, first index]
        self.grace: tuple[int, int] | None = None  # (line, column) of "{"
        self.slurs: list[tuple[int, int]] = []  # (line, column) of each open "("
        self.last_position = (1, 1)  # (line, column) after the last token read
        # Ticks written in a bar before an ending mark inside it (`G2G [1 G2:|`),
        # or None. The bar of the next ending starts with those ticks.
        self.ending_offset: int | None = None

    def _start_bar(self, opens_section: bool) -> None:
        """Reset what a bar line ends: accidentals, length, position."""
        self.bar_start = self.time
        # Accidentals written in this bar, keyed by letter index (0 for C) or,
        # when accidental_scope is "octave", by (letter, octave).
        self.accidentals: dict = {}
        self.content = False
        self.damaged = False
        self.meter_changed = False
        self.rests = 0
        self.overlay_ticks: int | None = None
        self.opens_section = opens_section
        self.position = (1, 1)

    def close_bar(self, boundary: bool, bar_line: bool = True) -> None:
        """End the current bar; `boundary` is True for section signs.

        `bar_line` is False when the music stops with no bar line after it.
        """
        if not self.content:
            last = self.bars[-1] if self.bars else None
            if boundary and last and last.number == self.bar_number - 1:
                self.bars[-1] = last._replace(closes_section=True)
            self._start_bar(self.opens_section or boundary)
            return
        ticks = self.time - self.bar_start
        if self.overlay_ticks is not None:
            ticks = self.overlay_ticks
            self.time = self.bar_start + ticks
        expected = None
        if self.bar_ticks is not None and not self.meter_changed:
            expected = self.bar_ticks * max(1, self.rests)
        line, column = self.position
        bar = Bar(
            self.name,
            self.bar_number,
            line,
            column,
            ticks,
            expected,
            self.opens_section,
            boundary,
            self.damaged,
            self.rests,
            bar_line,
        )
        self.bars.append(bar)
        self.bar_number += max(1, self.rests)
        self._start_bar(boundary)

    def mark_section_break(self) -> None:
        """Record an ending mark such as `[2`: a section edge at this bar line.

        An ending mark inside a bar starts the ending in mid-bar, as in
        `|G2G [1 G2:|[2 G3||`: the notes before the mark belong to every
        ending, so they are remembered and counted in the next ending's bar.
        """
        if self.content:
            self.ending_offset = self.time - self.bar_start
            return
        self.opens_section = True
        if self.bars and not self.bars[-1].closes_section:
            self.bars[-1] = self.bars[-1]._replace(closes_section=True)
        self.start_ending()

    def start_ending(self) -> None:
        """Count the notes shared with an ending that began in mid-bar, once."""
        if self.ending_offset is not None and not self.content:
            self.bar_start = self.time - self.ending_offset
            self.ending_offset = None
