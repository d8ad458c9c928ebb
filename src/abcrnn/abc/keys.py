"""Key signatures, meters and unit note lengths of ABC 2.1 fields.

Each parse function takes the text after the field letter and colon, returns a
value, and raises ValueError with a message naming the bad part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# Letters of the scale in the order key signatures store them.
LETTERS = "CDEFGAB"

# Position of each tonic on the circle of fifths (C = 0, G = 1, F = -1, ...).
_LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}

# Shift of each mode against the major key on the same tonic, in fifths.
_MODE_FIFTHS = {
    "major": 0,
    "ionian": 0,
    "mixolydian": -1,
    "dorian": -2,
    "minor": -3,
    "aeolian": -3,
    "phrygian": -4,
    "locrian": -5,
    "lydian": 1,
}
_MODE_BY_PREFIX = {name[:3]: name for name in _MODE_FIFTHS}

_SHARP_ORDER = "FCGDAEB"
_FLAT_ORDER = "BEADGCF"

_ACCIDENTAL_STEPS = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}

# Clef names allowed in K: and V: without "clef=".
_CLEF_WORDS = frozenset(
    "treble bass alto tenor baritone soprano mezzosoprano perc none "
    "treble8 bass3 alto1 alto2 tenor8".split()
)

_TONIC_RE = re.compile(r"([A-G])([#b]?)")
_WORD_RE = re.compile(
    r"\s*(?:(?P<acc>\^\^|\^|__|_|=)(?P<letter>[A-Ga-g])"
    r"|(?P<pair>[A-Za-z-]+=\S*)|(?P<word>[^\s=^_]+))"
)
_METER_RE = re.compile(r"\(?\s*(\d+(?:\s*\+\s*\d+)*)\s*\)?\s*/\s*(\d+)$")
_UNIT_RE = re.compile(r"(\d+)(?:\s*/\s*(\d+))?$")


@dataclass(frozen=True)
class Key:
    """A key signature: tonic (e.g. "F#", None for K:none), mode and alterations.

    `signature` is the alteration in semitones of C, D, E, F, G, A and B, in
    that order (1 for a sharp, -1 for a flat).
    """

    tonic: str | None
    mode: str
    signature: tuple[int, ...] = (0, 0, 0, 0, 0, 0, 0)


NO_KEY = Key(None, "none")


@dataclass(frozen=True)
class Meter:
    """A time signature, e.g. 6/8; M:C is 4/4 and M:C| is 2/2."""

    numerator: int
    denominator: int

    @property
    def compound(self) -> bool:
        """Whether the beat divides in three (6/8, 9/8, 12/8); tuplets depend on it."""
        return self.numerator % 3 == 0 and self.numerator > 3


def strip_comment(value: str) -> str:
    """Return a field value without its trailing % comment and outer spaces."""
    cut = value.find("%")
    if cut >= 0:
        value = value[:cut]
    return value.strip()


def _signature_for(fifths: int) -> list[int]:
    """Return the alterations of C..B for a key with `fifths` sharps (< 0: flats)."""
    signature = [0] * 7
    order, step = (_SHARP_ORDER, 1) if fifths > 0 else (_FLAT_ORDER, -1)
    for count in range(abs(fifths)):
        signature[LETTERS.index(order[count % 7])] += step
    return signature


def _mode_name(word: str) -> str | None:
    """Return the full mode name for a spelling such as "m", "Dor" or "Major"."""
    lowered = word.lower()
    if lowered == "m":
        return "minor"
    full = _MODE_BY_PREFIX.get(lowered[:3])
    if full is None or len(lowered) < 3 or not full.startswith(lowered):
        return None
    return full


def _split_mode(rest: str) -> tuple[str, str]:
    """Split the text after the tonic into the mode word and what follows it."""
    glued = re.match(r"[A-Za-z]+", rest)
    if glued and _mode_name(glued.group()):
        return glued.group(), rest[glued.end() :]
    spaced = re.match(r"\s+([A-Za-z]+)(?=\s|$|[=^_])", rest)
    if spaced and _mode_name(spaced.group(1)):
        return spaced.group(1), rest[spaced.end() :]
    if glued and not rest[glued.end() :].startswith("="):
        raise ValueError(f"unknown mode {glued.group()!r}")
    return "", rest


def _apply_extras(signature: list[int], rest: str) -> None:
    """Apply explicit accidentals ("^f _b", "exp ...") and skip clef settings."""
    position = 0
    while position < len(rest.rstrip()):
        match = _WORD_RE.match(rest, position)
        if match is None:
            raise ValueError(f"unexpected text {rest[position:].strip()!r}")
        position = match.end()
        if match.group("acc"):
            index = LETTERS.index(match.group("letter").upper())
            signature[index] = _ACCIDENTAL_STEPS[match.group("acc")]
        elif match.group("word"):
            word = match.group("word")
            if word == "exp":
                signature[:] = [0] * 7
            elif word.lower() not in _CLEF_WORDS:
                raise ValueError(
                    f"unexpected word {word!r}: expected a mode, accidentals "
                    "such as ^f, or a clef setting"
                )


@lru_cache(maxsize=256)
def parse_key(value: str) -> Key | None:
    """Parse a K: value such as "G", "F#m", "A Dorian", "Dmix ^g", "HP" or "none".

    Returns None when the value names no key (it is empty or only sets a clef),
    so the key in force stays. The mode word is case-insensitive and may be
    written in full or cut to at least three letters ("m" alone means minor).
    Raises ValueError when the tonic, mode or an extra word is not valid.
    """
    text = strip_comment(value)
    first = text.split(None, 1)[0] if text else ""
    if first == "" or "=" in first or first.lower() in _CLEF_WORDS - {"none"}:
        _apply_extras([0] * 7, text)
        return None
    if first == "none":
        signature = [0] * 7
        _apply_extras(signature, text[4:])
        return Key(None, "none", tuple(signature))
    if first in ("HP", "Hp"):
        signature = [1, 0, 0, 1, 0, 0, 0] if first == "Hp" else [0] * 7
        _apply_extras(signature, text[2:])
        return Key(first, "pipes", tuple(signature))
    tonic = _TONIC_RE.match(text)
    if tonic is None:
        raise ValueError(f"tonic must be a letter A-G, got {text!r}")
    mode_word, rest = _split_mode(text[tonic.end() :])
    mode = _mode_name(mode_word) if mode_word else "major"
    fifths = _LETTER_FIFTHS[tonic.group(1)] + _MODE_FIFTHS[mode]
    fifths += {"#": 7, "b": -7, "": 0}[tonic.group(2)]
    signature = _signature_for(fifths)
    _apply_extras(signature, rest)
    return Key(tonic.group(), mode, tuple(signature))


@lru_cache(maxsize=256)
def parse_meter(value: str) -> Meter | None:
    """Parse an M: value: "6/8", "C" (4/4), "C|" (2/2), "2+3/8"; None for free meter.

    "none" and an empty value mean free meter. Raises ValueError otherwise.
    """
    text = strip_comment(value)
    if text in ("", "none"):
        return None
    if text == "C":
        return Meter(4, 4)
    if text == "C|":
        return Meter(2, 2)
    match = _METER_RE.match(text)
    if match is None:
        raise ValueError(f"meter must look like 6/8, C or C|, got {text!r}")
    numerator = sum(int(part) for part in match.group(1).split("+"))
    denominator = int(match.group(2))
    if numerator == 0 or denominator == 0:
        raise ValueError(f"meter needs non-zero numbers, got {text!r}")
    return Meter(numerator, denominator)


@lru_cache(maxsize=256)
def parse_unit(value: str) -> tuple[int, int]:
    """Parse an L: value such as "1/8" into (numerator, denominator) of a whole note."""
    text = strip_comment(value)
    match = _UNIT_RE.match(text)
    if match is None:
        raise ValueError(f"unit note length must look like 1/8, got {text!r}")
    numerator = int(match.group(1))
    denominator = int(match.group(2) or 1)
    if numerator == 0 or denominator == 0:
        raise ValueError(f"unit note length needs non-zero numbers, got {text!r}")
    return numerator, denominator


def default_unit(meter: Meter | None) -> tuple[int, int]:
    """Return the unit length implied by the meter: 1/16 below 3/4, else 1/8."""
    if meter is not None and 4 * meter.numerator < 3 * meter.denominator:
        return 1, 16
    return 1, 8
