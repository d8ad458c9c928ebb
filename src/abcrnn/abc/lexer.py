"""The tokens of an ABC 2.1 music line, matched by one compiled regular expression.

`TOKEN_RE.match(line, position)` always matches one token: the last alternative
takes any single character, so the scanner moves on after a fault. Lengths
never start with 0, so "A0" or "A/0" leave a lone "0" that is reported. The
name of the outer group (`match.lastgroup`) is the token kind.
"""

from __future__ import annotations

import re

TOKEN_RE = re.compile(
    r"""
    (?P<note>(?P<acc>\^\^|\^|__|_|=)?(?P<letter>[A-Ga-g])(?P<octave>[',]*)
        (?P<num>(?:[1-9]\d*)?)(?P<slash>/*)(?P<den>(?:[1-9]\d*)?))
    |(?P<space>[ \t`]+)
    |(?P<bar>(?::*(?:\[\|\]?|\|+\]?):*|::+)(?:(?<=\|)(?P<barend>\d+(?:[,-]\d+)*))?)
    |(?P<broken>>{1,3}|<{1,3})
    |(?P<tuplet>\((?P<tp>[1-9]\d*)(?::(?P<tq>\d*))?(?::(?P<tr>\d*))?)
    |(?P<slur>\.?\()
    |(?P<slurend>\))
    |(?P<tie>\.?-)
    |(?P<quote>"(?P<quotetext>[^"]*)(?P<quoteend>"?))
    |(?P<deco>!(?P<deconame>[^!\s|]+)!)
    |(?P<plusdeco>\+(?P<plusname>[^+\s|]*)\+)
    |(?P<rest>[zx](?P<rnum>(?:[1-9]\d*)?)(?P<rslash>/*)(?P<rden>(?:[1-9]\d*)?))
    |(?P<multirest>[ZX](?P<count>\d*))
    |(?P<field>\[(?P<fname>[A-Za-z]):(?P<fvalue>[^\]]*)(?P<fend>\]?))
    |(?P<ending>\[(?P<endnum>\d+(?:[,-]\d+)*))
    |(?P<chord>\[)
    |(?P<chordend>\](?P<cnum>(?:[1-9]\d*)?)(?P<cslash>/*)(?P<cden>(?:[1-9]\d*)?))
    |(?P<grace>\{/?)
    |(?P<graceend>\})
    |(?P<shorthand>[.~H-Wh-w])
    |(?P<number>\d+/*\d*|/+\d*)
    |(?P<spacer>y\d*)
    |(?P<comment>%)
    |(?P<bang>![^!\s|]*)
    |(?P<continuation>\\)
    |(?P<overlay>&)
    |(?P<unknown>.)
    """,
    re.VERBOSE,
)

# Bar lines that do not end a section; every other bar line, and every bar line
# followed by an ending number, does.
PLAIN_BARS = frozenset({"|"})

# One-character decorations defined by ABC 2.1 before any U: field redefines them.
DEFAULT_SHORTHANDS = frozenset(".~HLMOPSTuv")

# Decoration names of ABC 2.1 (section 4.14) plus common abcm2ps extensions.
DECORATIONS = frozenset(
    """
    trill trill( trill) lowermordent uppermordent mordent pralltriller roll turn
    turnx invertedturn invertedturnx arpeggio > accent emphasis fermata
    invertedfermata tenuto 0 1 2 3 4 5 + plus snap slide wedge upbow downbow open
    thumb breath pppp ppp pp p mp mf f ff fff ffff sfz crescendo( < <( crescendo)
    <) diminuendo( >( diminuendo) >) segno coda D.S. D.C. dacoda dacapo fine
    shortphrase mediumphrase longphrase editorial courtesy xstem
    sf sfp fp sfs ^ marcato dot stacc staccato beambr1 beambr2 ped ped-up
    8va( 8va) 8vb( 8vb) 15ma( 15ma) 15mb( 15mb) gmark ~( ~) trem1 trem2 trem3 trem4
    invisible slashed-stem D.S.alcoda D.S.alfine D.C.alcoda D.C.alfine tocoda
    """.split()
)
# Lower-cased names, so that "!Segno!" or "!Coda!" are accepted as well.
DECORATIONS_LOWER = frozenset(name.lower() for name in DECORATIONS)

# Semitone steps of the accidentals written before a note.
ACCIDENTAL_STEPS = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}

# Semitones above C of each letter, and its index in a key signature.
LETTER_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
LETTER_INDEX = {letter: index for index, letter in enumerate("CDEFGAB")}

_length_cache: dict[tuple[str, str, str], tuple[int, int]] = {}


def note_length(num: str, slash: str, den: str) -> tuple[int, int]:
    """Return (numerator, denominator) of a written length in units of L.

    "" is 1, "2" is 2, "/" is 1/2, "//" is 1/4, "3/2" is 3/2 and "/4" is 1/4.
    """
    key = (num, slash, den)
    cached = _length_cache.get(key)
    if cached is not None:
        return cached
    numerator = int(num) if num else 1
    if not slash:
        denominator = 1
    elif den:
        denominator = int(den) << (len(slash) - 1)
    else:
        denominator = 1 << len(slash)
    if len(_length_cache) < 4096:
        _length_cache[key] = (numerator, denominator)
    return numerator, denominator


def decoration_known(name: str) -> bool:
    """Return whether `name` (between ! or + signs) is a known decoration."""
    return name in DECORATIONS or name.lower() in DECORATIONS_LOWER


# Last characters of a bar line, before an old line-break "!".
_BAR_ENDS = ("|", ":", "]")

# A word with a letter that is not a note, so the start of a decoration name.
_DECORATION_WORD = re.compile(r"[A-Ga-g]*[H-Zh-z]")


def old_line_break(text: str) -> int | None:
    """Return the index of a "!" used as an old line break inside a line, or None.

    ABC before 2.1 used "!" as a line break anywhere in a line (`|!fed c2A|`),
    and files without a version line still do. A "!" that follows a bar line,
    has no closing "!" after it and is not followed by a decoration name cannot
    start a decoration, so it is that old line break. A "!" at the very end of a
    line is left to the `bang` token, which is read as a line break too.
    """
    limit = len(text)
    stripped = text.rstrip()
    if stripped.endswith("!") and stripped[:-1].rstrip().endswith(_BAR_ENDS):
        limit = len(stripped) - 1
    position = text.rfind("!", 0, limit)
    if position < 0 or text[:position].count("!") % 2:
        return None  # no "!", or the last one closes a decoration
    rest = text[position + 1 : limit].strip()
    if not rest or rest.startswith("%"):
        return None
    if not text[:position].rstrip().endswith(_BAR_ENDS):
        return None
    if _DECORATION_WORD.match(text, position + 1):
        return None  # "|!trill c": a decoration without its closing "!"
    return position
