"""Token handlers for everything in a music line that is not a note or chord.

Bar lines, rhythm marks (broken rhythm, tuplets, ties), slurs, decorations,
quoted text, inline fields and faults such as unknown symbols. MusicReader
mixes this class in; each handler is called as `_on_<kind>(match, line,
column)` with the token kind named by lexer.TOKEN_RE.
"""

from __future__ import annotations

from abcrnn.abc.diagnostics import ERROR, WARNING
from abcrnn.abc.events import NOTE, Annotation
from abcrnn.abc.lexer import PLAIN_BARS, decoration_known

# Broken rhythm factors (numerator, denominator) for the first and second element.
_BROKEN = {
    ">": ((3, 2), (1, 2)),
    ">>": ((7, 4), (1, 4)),
    ">>>": ((15, 8), (1, 8)),
    "<": ((1, 2), (3, 2)),
    "<<": ((1, 4), (7, 4)),
    "<<<": ((1, 8), (15, 8)),
}

# Notes in the time of which a tuplet of p notes plays, when (p:q is not written.
# None: 3 in compound meters (6/8, 9/8, 12/8), else 2.
_TUPLET_TIME = {2: 3, 3: 2, 4: 3, 5: None, 6: 2, 7: None, 8: 3, 9: None}

# Characters that ABC 2.1 reserves for future use: programs should ignore them
# between notes, with at most a warning.
RESERVED_CHARACTERS = frozenset("#*;?@")

# Characters that start an annotation (text placed by the renderer) rather than
# a chord symbol.
_ANNOTATION_MARKS = frozenset("^_<>@")


def _ignores_rest(text: str) -> bool:
    """Return True when nothing but spaces or a comment follows on the line."""
    rest = text.strip()
    return not rest or rest.startswith("%")


class MarksMixin:
    """Handlers for bar lines, rhythm marks, slurs, decorations and text."""

    # Bar lines

    def _on_bar(self, match, line: int, column: int) -> None:
        voice = self.voice
        if voice.broken is not None:
            message = "broken rhythm has no note after it in the bar"
            self.report(ERROR, "misplaced-broken-rhythm", message, *voice.broken_at)
            voice.broken = None
        plain = match.group("bar") in PLAIN_BARS and not match.group("barend")
        voice.close_bar(boundary=not plain)
        if match.group("barend"):
            voice.start_ending()
        voice.last = None

    def _on_ending(self, match, line: int, column: int) -> None:
        self.voice.mark_section_break()

    def _on_overlay(self, match, line: int, column: int) -> None:
        # NOTE: only the first layer of an overlaid bar counts towards its length.
        voice = self.voice
        if voice.overlay_ticks is None:
            voice.overlay_ticks = voice.time - voice.bar_start
        voice.time = voice.bar_start
        voice.last = None

    def _on_spacer(self, match, line: int, column: int) -> None:
        pass

    # Rhythm marks

    def _on_broken(self, match, line: int, column: int) -> None:
        voice = self.voice
        if voice.grace is not None:
            return
        if voice.last is None or voice.broken is not None:
            message = f"'{match.group()}' needs a note on each side within one bar"
            self.report(ERROR, "misplaced-broken-rhythm", message, line, column)
            return
        first, second = _BROKEN[match.group()]
        first_index, onset, ticks = voice.last
        self.scale_events(first_index, *first)
        ticks = self.scale(ticks, *first)
        voice.time = onset + ticks
        voice.last = (first_index, onset, ticks)
        voice.broken = second
        voice.broken_at = (line, column)

    def _on_tuplet(self, match, line: int, column: int) -> None:
        voice = self.voice
        p = int(match.group("tp"))
        if p not in _TUPLET_TIME:
            message = f"tuplet ({p} must have 2 to 9 notes"
            self.report(ERROR, "invalid-tuplet", message, line, column)
            return
        default_q = _TUPLET_TIME[p]
        if default_q is None:
            default_q = 3 if voice.meter is not None and voice.meter.compound else 2
        q = int(match.group("tq") or default_q)
        r = int(match.group("tr") or p)
        if q == 0 or r == 0:
            message = f"invalid tuplet {match.group()!r}: q and r must be above 0"
            self.report(ERROR, "invalid-tuplet", message, line, column)
            return
        if voice.tuplet is not None:
            message = "tuplet starts before the previous one ends"
            self.report(WARNING, "nested-tuplet", message, line, column)
        voice.tuplet = [r, q, p, line, column]

    def _on_tie(self, match, line: int, column: int) -> None:
        voice = self.voice
        if voice.grace is not None:
            return
        events = self.events
        if voice.chord is not None:
            indices = range(max(voice.chord[3], len(events) - 1), len(events))
        elif voice.last is not None:
            indices = range(voice.last[0], len(events))
        else:
            indices = range(0)
        notes = [index for index in indices if events[index].kind == NOTE]
        if not notes:
            message = "tie '-' does not follow a note"
            self.report(WARNING, "misplaced-tie", message, line, column)
            return
        if voice.ties is None:
            voice.ties = {}
        for index in notes:
            events[index].tie = True
            voice.ties[self.keys[index]] = (events[index].pitch, line, column)

    def _on_slur(self, match, line: int, column: int) -> None:
        self.voice.slurs.append((line, column))

    def _on_slurend(self, match, line: int, column: int) -> None:
        if self.voice.slurs:
            self.voice.slurs.pop()
        else:
            self.report(ERROR, "unmatched-close", "')' closes no slur", line, column)

    # Decorations, text and inline fields

    def _on_deco(self, match, line: int, column: int) -> None:
        name = match.group("deconame")
        if not decoration_known(name):
            message = f"unknown decoration !{name}!"
            self.report(ERROR, "unknown-decoration", message, line, column)

    def _on_plusdeco(self, match, line: int, column: int) -> None:
        name = match.group("plusname")
        if not decoration_known(name):
            message = f"unknown decoration +{name}+"
            self.report(ERROR, "unknown-decoration", message, line, column)

    def _on_shorthand(self, match, line: int, column: int) -> None:
        if match.group() not in self.shorthands:
            self._on_unknown(match, line, column)

    def _on_quote(self, match, line: int, column: int) -> None:
        if not match.group("quoteend"):
            message = "unclosed chord symbol: '\"' has no closing '\"'"
            self.report(ERROR, "unclosed-quote", message, line, column)
            return
        text = match.group("quotetext")
        if text[:1] in _ANNOTATION_MARKS:
            self.annotations.append(Annotation(text, line, column))
        else:
            self.chord_symbols.append(Annotation(text, line, column))

    def _on_field(self, match, line: int, column: int) -> None:
        if not match.group("fend"):
            message = "inline field has no closing ']'"
            self.report(ERROR, "unclosed-field", message, line, column)
            return
        self.apply_field(match.group("fname"), match.group("fvalue"), line, column)

    # Line ends and faults

    def _on_bang(self, match, line: int, column: int) -> None:
        # A lone "!" at the end of a line is an old line-break mark. Otherwise
        # the token contains the "!" and the name after it, so the name's
        # letters are not read as notes.
        if len(match.group()) > 1 or not _ignores_rest(match.string[match.end() :]):
            message = "unclosed decoration: '!' has no closing '!'"
            self.report(ERROR, "unclosed-decoration", message, line, column)

    def _on_continuation(self, match, line: int, column: int) -> None:
        if not _ignores_rest(match.string[match.end() :]):
            self._on_unknown(match, line, column)

    def _on_number(self, match, line: int, column: int) -> None:
        message = f"length {match.group()!r} follows no note"
        self.report(ERROR, "lone-length", message, line, column)

    def _on_unknown(self, match, line: int, column: int) -> None:
        if match.group() == "$" and self.dollar_breaks:
            return
        if match.group() in RESERVED_CHARACTERS:
            message = f"reserved character {match.group()!r} is ignored"
            self.report(WARNING, "reserved-character", message, line, column)
            return
        # A run of unknown characters gets one diagnostic, at its first character.
        if self.unknown_end != (line, column):
            message = f"unknown symbol {match.group()!r}"
            self.report(ERROR, "unknown-symbol", message, line, column)
        self.unknown_end = (line, column + len(match.group()))
