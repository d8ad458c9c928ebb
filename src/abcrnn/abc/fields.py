"""Apply field lines and inline fields (K:, M:, L:, V:, U: ...) while reading a tune.

Fields in the header set the tune's defaults. Fields in the body change only
the voice they appear in, so a key change in one voice never reaches another.
"""

from __future__ import annotations

from abcrnn.abc.diagnostics import ERROR, WARNING
from abcrnn.abc.events import TICKS_PER_WHOLE
from abcrnn.abc.keys import (
    Key,
    Meter,
    default_unit,
    parse_key,
    parse_meter,
    parse_unit,
    strip_comment,
)
from abcrnn.abc.voice import Voice, meter_ticks

# Field letters defined by ABC 2.1 (other letters get a warning).
KNOWN_FIELDS = frozenset("ABCDFGHIKLMmNOPQRrSsTUVWwXZ+")

# Name of the default voice when the header declares no voice.
DEFAULT_VOICE = "1"


class FieldsMixin:
    """Tune-level settings and the handling of fields, shared by MusicReader."""

    def __init__(self) -> None:
        self.key: Key | None = None
        self.meter: Meter | None = None
        self.meter_given = False
        self.unit: tuple[int, int] | None = None
        self.in_body = False
        self.stopped = False  # set by an X: line inside the body
        self.declared_voices: list[str] = []
        self.accidental_scope = "pitch"
        self.dollar_breaks = False  # set by "I:linebreak $"

    def start_body(self) -> None:
        """End the header: fix the default unit length from the meter."""
        if self.unit is None:
            self.unit = default_unit(self.meter)
        self.in_body = True

    def current_voice(self) -> Voice:
        """Return the voice being read, creating the default voice on first use."""
        if self.voice is None:
            name = self.declared_voices[0] if self.declared_voices else DEFAULT_VOICE
            self.voice = self._voice_named(name)
        return self.voice

    def _voice_named(self, name: str) -> Voice:
        voice = self.voices.get(name)
        if voice is None:
            signature = self.key.signature if self.key else (0,) * 7
            numerator, denominator = self.unit or default_unit(self.meter)
            unit_ticks = TICKS_PER_WHOLE * numerator // denominator
            voice = Voice(name, signature, self.meter, unit_ticks)
            voice.accidental_scope = self.accidental_scope
            self.voices[name] = voice
        return voice

    def apply_field(self, letter: str, value: str, line: int, column: int) -> None:
        """Apply one field (value as written, comment included)."""
        if letter == "K":
            self._set_key(value, line, column)
        elif letter == "M":
            self._set_meter(value, line, column)
        elif letter == "L":
            self._set_unit(value, line, column)
        elif letter == "V":
            self._set_voice(value)
        elif letter == "U":
            self._define_shorthand(value)
        elif letter == "I":
            self.apply_directive(value)
        elif letter == "X":
            self.report(
                ERROR,
                "misplaced-x",
                "X: field inside a tune: put a blank line before each new tune",
                line,
                column,
            )
            self.stopped = True
        elif letter not in KNOWN_FIELDS:
            self.report(
                WARNING, "unknown-field", f"unknown field {letter}:", line, column
            )

    def apply_directive(self, text: str) -> None:
        """Apply a %% directive or I: field that changes how notes are read.

        Only propagate-accidentals and linebreak ("$" as a line break) matter.
        """
        words = strip_comment(text).split()
        if words[:1] == ["linebreak"]:
            self.dollar_breaks = "$" in words
        if len(words) == 2 and words[0] == "propagate-accidentals":
            if words[1] in ("pitch", "octave", "not"):
                self.accidental_scope = words[1]
                for voice in self.voices.values():
                    voice.accidental_scope = words[1]

    def _set_key(self, value: str, line: int, column: int) -> None:
        try:
            key = parse_key(value)
        except ValueError as error:
            text = strip_comment(value)
            message = f"invalid key {text!r}: {error}"
            self.report(ERROR, "invalid-key", message, line, column)
            return
        if key is None:
            if not self.in_body and not strip_comment(value):
                message = "K: names no key; no key signature is used"
                self.report(WARNING, "empty-key", message, line, column)
            return
        if self.in_body:
            # A new key signature also cancels the accidentals of the bar so far.
            voice = self.current_voice()
            voice.signature = key.signature
            voice.accidentals = {}
        else:
            self.key = key

    def _set_meter(self, value: str, line: int, column: int) -> None:
        try:
            meter = parse_meter(value)
        except ValueError as error:
            self.report(ERROR, "invalid-meter", f"invalid meter: {error}", line, column)
            meter = None
        if not self.in_body:
            self.meter = meter
            self.meter_given = True
            return
        voice = self.current_voice()
        voice.meter = meter
        voice.bar_ticks = meter_ticks(meter)
        if voice.content:
            voice.meter_changed = True

    def _set_unit(self, value: str, line: int, column: int) -> None:
        try:
            numerator, denominator = parse_unit(value)
        except ValueError as error:
            message = f"invalid unit note length: {error}"
            self.report(ERROR, "invalid-length", message, line, column)
            return
        if self.in_body:
            unit_ticks = TICKS_PER_WHOLE * numerator // denominator
            self.current_voice().unit_ticks = unit_ticks
        else:
            self.unit = (numerator, denominator)

    def _set_voice(self, value: str) -> None:
        words = strip_comment(value).split()
        name = words[0] if words else DEFAULT_VOICE
        if not self.in_body:
            if name not in self.declared_voices:
                self.declared_voices.append(name)
            return
        self.voice = self._voice_named(name)

    def _define_shorthand(self, value: str) -> None:
        # "U: W = !trill!" makes W a decoration. Only the letters H-W and h-w
        # and "~" can be redefined, because other characters are notes or marks.
        text = strip_comment(value)
        if text:
            self.shorthands.add(text[0])
