"""Normalise the text of one ABC tune for training, counting what is removed.

The options object only needs the attributes of `abcrnn.corpus.CorpusOptions`:
normalise, drop_titles, drop_chords and drop_decorations.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from abcrnn.abc.tunes import FIELD_LINE, is_blank, strip_comment

# Fields kept by normalisation because they change how the music sounds or is
# grouped: number, title, meter, unit length, key, rhythm, tempo, parts and voices.
MUSIC_FIELDS = frozenset("XTMLKRQPV")

# A double-quoted chord symbol or annotation, on one line.
CHORD_SYMBOL = re.compile(r'"[^"\n]*"')

# Text that decoration removal must leave alone: quoted strings, inline fields such
# as [K:D], and a trailing comment.
_PROTECTED = r'"[^"\n]*"|\[[A-Za-z]:[^\]\n]*\]|(?<!\\)%.*$'
# `!name!` decorations. The name has no space and no bar line, so a lone `!` at the
# end of a music line (an old line-break mark common in Irish collections) stays.
_BANG = r"![^!\s|]+!"
# `+name+` decorations. `+CEG+` is an old chord syntax and is kept (see _PLUS_CHORD).
_PLUS = r"\+[^+\s|]+\+"
# Shorthand decorations directly before a note, accidental, rest, chord or grace.
_SHORTHAND = r"[~.HLMOPSTuv]+(?=[\^_=A-Ga-gzZxX\[{])"
DECORATION = re.compile(
    f"(?P<keep>{_PROTECTED})|(?P<plus>{_PLUS})|{_BANG}|{_SHORTHAND}", re.MULTILINE
)
_PLUS_CHORD = re.compile(r"\+(?:[\^_=]*[A-Ga-g][,']*[\d/]*)+\+")


class NormaliseOptions(Protocol):
    """The options that normalise_tune reads (CorpusOptions has them all)."""

    normalise: bool
    drop_titles: bool
    drop_chords: bool
    drop_decorations: bool


@dataclass
class NormaliseCounts:
    """Counts of what normalisation removed, summed over tunes."""

    field_lines: Counter[str] = field(default_factory=Counter)  # by field letter
    directives: int = 0  # `%%` lines
    comments: int = 0  # `%` comment lines and trailing `% ...` comments
    blank_lines: int = 0  # blank lines inside a tune
    titles: int = 0
    chords: int = 0
    decorations: int = 0

    def to_dict(self) -> dict[str, object]:
        """Return the counts as a JSON-ready dict, field letters sorted by count."""
        return {
            "field_lines": dict(self.field_lines.most_common()),
            "directives": self.directives,
            "comments": self.comments,
            "blank_lines": self.blank_lines,
            "titles": self.titles,
            "chords": self.chords,
            "decorations": self.decorations,
        }


def remove_chord_symbols(line: str) -> tuple[str, int]:
    """Remove double-quoted chord symbols and annotations; return (line, count)."""
    return CHORD_SYMBOL.subn("", line)


def remove_decorations(line: str) -> tuple[str, int]:
    """Remove decorations from a music line; return (line, count).

    Removes `!trill!`-style and `+trill+`-style decorations (fingerings such as
    `!1!` included) and the shorthands `~ . H L M O P S T u v` where they stand
    before a note, chord or rest. Notes, chords, quoted text, inline fields and
    comments are kept.
    """
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if match.group("keep") is not None:
            return match.group(0)
        plus = match.group("plus")
        if plus is not None and _PLUS_CHORD.fullmatch(plus):
            return plus
        count += 1
        return ""

    return DECORATION.sub(replace, line), count


def normalise_tune(
    tune: str, options: NormaliseOptions, counts: NormaliseCounts
) -> str:
    """Return the tune with the removals that `options` turns on, updating `counts`.

    Blank lines inside the tune are always removed, so that a blank line in the
    training text only ever separates two tunes.
    """
    kept_lines: list[str] = []
    previous_kept = True  # whether the last field line was kept, for `+:` lines
    for line in tune.split("\n"):
        if is_blank(line):
            counts.blank_lines += 1
            continue

        if FIELD_LINE.match(line):
            if line.startswith("+") and not previous_kept:
                counts.field_lines["+"] += 1
                new_line = None
            else:
                new_line = _field_line(line, options, counts)
                previous_kept = new_line is not None
        elif line.startswith("%"):
            new_line = _comment_line(line, options, counts)
        else:
            new_line = _music_line(line, options, counts)

        if new_line is not None:
            kept_lines.append(new_line)
    return "\n".join(kept_lines)


def _comment_line(
    line: str, options: NormaliseOptions, counts: NormaliseCounts
) -> str | None:
    """Return a comment or directive line, or None when normalisation drops it."""
    if not options.normalise:
        return line
    if line.startswith("%%"):
        counts.directives += 1
    else:
        counts.comments += 1
    return None


def _field_line(
    line: str, options: NormaliseOptions, counts: NormaliseCounts
) -> str | None:
    """Return a field line rewritten as `K:value`, or None when it is dropped.

    A `+:` line reaches here only when the field it continues was kept.
    """
    letter, value = line[0], line[2:]
    if letter == "T" and options.drop_titles:
        counts.titles += 1
        return None
    if not options.normalise:
        return line
    if letter not in MUSIC_FIELDS and letter != "+":
        counts.field_lines[letter] += 1
        return None

    value, had_comment = strip_comment(value)
    counts.comments += had_comment
    if letter == "X":
        # The reference number carries no music, and O'Neill's numbers run to four
        # digits. One fixed number teaches a model a single way to start a tune, the
        # way the generation prime "X:1" and a newline starts it.
        return "X:1"
    return f"{letter}:{value.strip()}"


def _music_line(
    line: str, options: NormaliseOptions, counts: NormaliseCounts
) -> str | None:
    """Remove what `options` turns off from a music line: comments, chords, etc.

    Returns None when nothing but spaces is left of a line that had content removed.
    """
    original = line
    if options.normalise:
        line, had_comment = strip_comment(line)
        counts.comments += had_comment
    if options.drop_chords:
        line, removed = remove_chord_symbols(line)
        counts.chords += removed
    if options.drop_decorations:
        line, removed = remove_decorations(line)
        counts.decorations += removed
    if options.normalise:
        # ABC reads a tab as a space, and spaces at either end of a line mean nothing.
        line = line.replace("\t", " ").strip()
    if line != original and is_blank(line):
        return None
    return line
