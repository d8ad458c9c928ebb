"""Split ABC text into tunes and read their header fields.

A tune starts at an `X:` line and ends at a blank line or at the next `X:` line. A
blank line ends a tune only once its body has started, that is once a line that is
neither a field line (`K:G`), a comment nor a `%%` directive has appeared. So a blank
line inside the header, or right after `K:`, does not cut the tune in two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A field line: one letter (or `+` for a continuation) and a colon at the line start.
FIELD_LINE = re.compile(r"^([A-Za-z+]):(.*)$")


@dataclass(frozen=True)
class SplitResult:
    """Tunes found in a text, and the non-blank lines outside any tune.

    Each tune starts at its `X:` line, uses LF line endings and has no trailing
    blank lines and no trailing newline. `start_lines` contains the 1-based line number
    of each tune's `X:` line in the input. `fragments` contains each run of non-blank
    lines outside any tune, and `dropped_lines` counts those lines.
    """

    tunes: list[str]
    dropped_lines: int = 0
    fragments: list[str] = field(default_factory=list)
    start_lines: list[int] = field(default_factory=list)


def normalise_newlines(text: str) -> str:
    """Replace CRLF and lone CR line endings with LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def is_blank(line: str) -> bool:
    """Return True for an empty or whitespace-only line."""
    return not line.strip()


def is_music_line(line: str) -> bool:
    """Return True for a non-blank line that is not a field line or a comment."""
    return not (is_blank(line) or line.startswith("%") or FIELD_LINE.match(line))


def split_tunes(text: str) -> SplitResult:
    """Split ABC text into tunes, dropping the lines that belong to no tune.

    Line endings are normalised to LF first, so no tune contains a carriage return.
    Whitespace-only lines count as blank lines. No tune is ever empty: each one contains
    at least its `X:` line.
    """
    lines = normalise_newlines(text).split("\n")
    tunes: list[str] = []
    start_lines: list[int] = []
    fragments: list[str] = []
    current: list[str] | None = None  # lines of the open tune, None outside a tune
    body_started = False
    outside: list[str] = []  # the run of non-blank lines outside any tune

    def close_tune() -> None:
        while current and is_blank(current[-1]):
            current.pop()
        tunes.append("\n".join(current))

    def close_fragment() -> None:
        if outside:
            fragments.append("\n".join(outside))
            outside.clear()

    for number, line in enumerate(lines, start=1):
        if line.startswith("X:"):
            if current is not None:
                close_tune()
            close_fragment()
            current, body_started = [line], False
            start_lines.append(number)
        elif current is not None:
            if is_blank(line) and body_started:
                close_tune()
                current = None
            else:
                current.append(line)
                body_started = body_started or is_music_line(line)
        elif is_blank(line):
            close_fragment()
        else:
            outside.append(line)

    if current is not None:
        close_tune()
    close_fragment()
    dropped = sum(fragment.count("\n") + 1 for fragment in fragments)
    return SplitResult(tunes, dropped, fragments, start_lines)


def strip_comment(line: str) -> tuple[str, bool]:
    """Remove a trailing `%` comment from a line; return (line, whether one was found).

    A `%` escaped as `\\%` or inside a double-quoted string does not start a comment.
    """
    in_quotes = False
    previous = ""
    for index, char in enumerate(line):
        if char == '"':
            in_quotes = not in_quotes
        elif char == "%" and not in_quotes and previous != "\\":
            return line[:index], True
        previous = char
    return line, False


def header_fields(tune: str) -> dict[str, str]:
    """Return the first value of each header field, e.g. {"X": "1", "K": "G"}.

    The header runs from the `X:` line to the first `K:` line, or to the first music
    line when there is no `K:`. Values have comments and surrounding spaces removed.
    A `+:` line continues the field on the line before it.
    """
    fields: dict[str, str] = {}
    last_letter = ""
    for line in normalise_newlines(tune).split("\n"):
        if is_blank(line) or line.startswith("%"):
            continue
        match = FIELD_LINE.match(line)
        if match is None:
            break
        letter = match.group(1)
        value = strip_comment(match.group(2))[0].strip()
        if letter == "+":
            if last_letter:
                fields[last_letter] = f"{fields[last_letter]} {value}".strip()
        elif letter not in fields:
            fields[letter] = value
            last_letter = letter
        else:
            last_letter = ""
        if letter == "K":
            break
    return fields
