"""Parse one ABC 2.1 tune into timed events, bars and diagnostics.

parse_tune does not raise on any text (tests/test_parser_fuzz.py checks this on
random and mutated tunes): every fault comes back as a Diagnostic with its line
and column, counted from 1, where line 1 is the tune's first line.
"""

from __future__ import annotations

import re

from abcrnn.abc.diagnostics import ERROR, WARNING
from abcrnn.abc.events import ParsedTune
from abcrnn.abc.music import MusicReader
from abcrnn.abc.tunes import header_fields, normalise_newlines

# A field line such as "K:G". A note or rest letter followed by ":|" or "::"
# ("A:|", "e::", "z:|") starts a music line instead, but other letters always
# start a field, so "N::2nd Setting" is a note field.
FIELD_LINE_RE = re.compile(r"([A-Za-z+]):(?!(?<=[A-Ga-gxzZ]:)[|:])")


def parse_tune(text: str) -> ParsedTune:
    """Parse the text of one tune, from its X: line to its last music line.

    A blank line after the music has started ends the tune; what follows it is
    reported as ignored. Line endings may be LF, CRLF or CR.
    """
    lines = _continue_directives(normalise_newlines(text).split("\n"))
    reader = MusicReader()
    body_start = _read_header(lines, reader)
    if not reader.meter_given:
        message = "no M: field: free meter, so bar lengths are not checked"
        reader.report(WARNING, "missing-meter", message, max(1, body_start), 1)
    reader.start_body()
    _read_body(lines, body_start, reader)
    _finish_voices(reader)
    diagnostics = sorted(reader.diagnostics, key=lambda item: (item.line, item.column))
    return ParsedTune(
        header=header_fields("\n".join(lines)),
        key=reader.key,
        meter=reader.meter if reader.meter_given else None,
        events=reader.events,
        bars=[bar for voice in reader.voices.values() for bar in voice.bars],
        diagnostics=diagnostics,
        chord_symbols=reader.chord_symbols,
        annotations=reader.annotations,
        voices=tuple(reader.voices),
    )


def _continue_directives(lines: list[str]) -> list[str]:
    """Turn the lines that continue a `%%` directive ending in "\\" into comments.

    Programs such as BarFly write long directives over several lines this way
    (`%%Bfly 0 300 ... \\`). The line count stays the same, so line numbers
    in diagnostics do not move.
    """
    result = list(lines)
    for index in range(1, len(result)):
        previous = result[index - 1]
        if previous.startswith("%") and previous.rstrip().endswith("\\"):
            if previous.startswith("%%") or result[index - 1] != lines[index - 1]:
                result[index] = "%" + result[index]
    return result


def _read_header(lines: list[str], reader: MusicReader) -> int:
    """Apply the header fields and return the index of the first body line."""
    seen_field = seen_x = False
    for index, line in enumerate(lines):
        if line.startswith("%%"):
            reader.apply_directive(line[2:])
        if not line.strip() or line.startswith("%"):
            continue
        field = FIELD_LINE_RE.match(line)
        if field is None:
            _report_missing(reader, seen_field, index + 1)
            return index
        letter = field.group(1)
        if not seen_field and letter != "X":
            reader.report(ERROR, "missing-x", "tune must start with an X: field", 1, 1)
        seen_field = True
        if letter == "X":
            if seen_x:
                message = "second X: field: put a blank line before each new tune"
                reader.report(ERROR, "misplaced-x", message, index + 1, 1)
            seen_x = True
        else:
            reader.apply_field(letter, line[field.end() :], index + 1, 1)
        if letter == "K":
            return index + 1
    _report_missing(reader, seen_field, max(1, len(lines)))
    return len(lines)


def _report_missing(reader: MusicReader, seen_field: bool, line: int) -> None:
    """Report the missing K: (and X: when no field came at all)."""
    if not seen_field:
        reader.report(ERROR, "missing-x", "tune must start with an X: field", 1, 1)
    message = "missing K: field: the header must end with a key before the music"
    reader.report(ERROR, "missing-k", message, line, 1)


def _read_body(lines: list[str], start: int, reader: MusicReader) -> None:
    """Read field lines and music lines up to the blank line that ends the tune.

    Blank lines before the first music line get a warning but do not end the
    tune, as in abc.tunes.split_tunes.
    """
    music_started = False
    first_blank = None  # index of the first blank line before the music
    for index in range(start, len(lines)):
        line = lines[index]
        if not line.strip():
            if music_started:
                _report_ignored(lines, index, reader)
                return
            first_blank = index if first_blank is None else first_blank
            continue
        if line[0] == "%":
            if line.startswith("%%"):
                reader.apply_directive(line[2:])
            continue
        field = FIELD_LINE_RE.match(line)
        if field is None:
            if not music_started and first_blank is not None:
                message = "blank line between the header and the music"
                reader.report(WARNING, "blank-line", message, first_blank + 1, 1)
            music_started = True
            reader.read_line(line, index + 1)
            continue
        reader.apply_field(field.group(1), line[field.end() :], index + 1, 1)
        if reader.stopped:
            return


def _report_ignored(lines: list[str], index: int, reader: MusicReader) -> None:
    for number, text in enumerate(lines[index:], index + 1):
        if text.strip():
            message = "text after a blank line is not part of the tune"
            reader.report(WARNING, "ignored-text", message, number, 1)
            return


def _finish_voices(reader: MusicReader) -> None:
    """Report what each voice leaves open and close its last bar."""
    for voice in reader.voices.values():
        reader.voice = voice
        line, column = voice.last_position
        for slur_line, slur_column in voice.slurs:
            message = "unclosed slur: '(' has no ')'"
            reader.report(ERROR, "unclosed-slur", message, slur_line, slur_column)
        if voice.tuplet is not None:
            tuplet_line, tuplet_column = voice.tuplet[3], voice.tuplet[4]
            message = (
                f"tuplet is {voice.tuplet[0]} note(s) short at the end of the tune"
            )
            reader.report(ERROR, "unclosed-tuplet", message, tuplet_line, tuplet_column)
        if voice.broken is not None:
            message = "broken rhythm has no note after it"
            reader.report(ERROR, "misplaced-broken-rhythm", message, *voice.broken_at)
        for targets in (voice.tie_targets, voice.ties):
            if targets:
                reader.warn_dangling(targets)
        if voice.content:
            message = "the music does not end with a bar line"
            reader.report(WARNING, "missing-final-bar", message, line, column)
            voice.close_bar(boundary=True, bar_line=False)
        else:
            voice.close_bar(boundary=True)
