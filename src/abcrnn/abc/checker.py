"""Check ABC tunes: well-formed notation and bars that fill their meter.

A tune is valid when it has no diagnostic of severity "error". Besides the
parser's faults, the checker reports bars whose length does not match the
meter and tunes without any note.

Short bars are allowed where they can make a whole bar together. The first
bar (a pickup) is always allowed, and so is a short last bar that ends with a
bar line. A short bar before a repeat, double bar or ending is allowed when a
short bar that opens a section makes up the rest of the bar, and the other
way round. So in 2/4 with L:1/8, `|: ... A2 :|` followed by `B2 |` passes.
An ending that starts inside a bar (`|G2G [1 G2:|[2 G3||`) shares the notes
before its mark with the later endings, whose bars count them. Across a meter
change, two parts pair when they fill the meter of either one.

NOTE: short bars are paired within the whole voice, not within a section and
the section its repeat returns to, so a short bar passes when any section edge
of the voice supplies its missing time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from math import lcm

from abcrnn.abc.diagnostics import ERROR, Diagnostic
from abcrnn.abc.events import NOTE, REST, TICKS_PER_WHOLE, Bar, ParsedTune
from abcrnn.abc.music import MAX_DIAGNOSTICS, too_many_diagnostics
from abcrnn.abc.parser import parse_tune
from abcrnn.abc.tunes import split_tunes


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one tune: its number in the file, title and diagnostics.

    index counts tunes from 1 in the checked text. first_line is the file line of
    the tune's X: line. Diagnostics carry file line numbers when the tune came
    from check_text, and tune line numbers when it came from check_tune.
    """

    index: int
    title: str
    valid: bool
    diagnostics: list[Diagnostic]
    first_line: int = 1

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics whose severity is "error"."""
        return [item for item in self.diagnostics if item.severity == ERROR]

    def to_dict(self) -> dict[str, object]:
        """Return the result as a JSON-ready dict."""
        return {
            "index": self.index,
            "title": self.title,
            "valid": self.valid,
            "first_line": self.first_line,
            "diagnostics": [item.to_dict() for item in self.diagnostics],
        }


@dataclass(frozen=True)
class CheckSummary:
    """Counts over many results; error_tunes maps an error code to the tunes with it."""

    tunes: int
    valid: int
    error_tunes: dict[str, int] = field(default_factory=dict)
    warnings: int = 0

    @property
    def invalid(self) -> int:
        """The number of tunes with at least one error."""
        return self.tunes - self.valid

    def to_dict(self) -> dict[str, object]:
        """Return the counts as a JSON-ready dict."""
        return {
            "tunes": self.tunes,
            "valid": self.valid,
            "invalid": self.invalid,
            "error_tunes": dict(self.error_tunes),
            "warnings": self.warnings,
        }


def check_tune(text: str, index: int = 1) -> CheckResult:
    """Check one tune; diagnostics count lines from the tune's first line."""
    parsed = parse_tune(text)
    return result_for(parsed, index)


def result_for(parsed: ParsedTune, index: int = 1) -> CheckResult:
    """Turn a parsed tune into a CheckResult, adding bar and content checks."""
    diagnostics = list(parsed.diagnostics)
    diagnostics.extend(bar_diagnostics(parsed.bars))
    if not any(event.kind in (NOTE, REST) for event in parsed.events):
        line = max(1, len(parsed.header))
        message = "tune has no notes"
        diagnostics.append(Diagnostic(ERROR, "no-music", message, line, 1))
    diagnostics.sort(key=lambda item: (item.line, item.column))
    valid = not any(item.severity == ERROR for item in diagnostics)
    if len(diagnostics) > MAX_DIAGNOSTICS + 1:
        last = diagnostics[MAX_DIAGNOSTICS - 1]
        diagnostics = diagnostics[:MAX_DIAGNOSTICS]
        diagnostics.append(too_many_diagnostics(last.line, last.column))
    return CheckResult(index, parsed.title, valid, diagnostics)


def check_text(text: str) -> list[CheckResult]:
    """Split text into tunes and check each; diagnostics carry file line numbers."""
    split = split_tunes(text)
    results = []
    for index, (tune, start) in enumerate(
        zip(split.tunes, split.start_lines, strict=True), 1
    ):
        result = check_tune(tune, index)
        shifted = [item.shifted(start - 1) for item in result.diagnostics]
        results.append(
            CheckResult(index, result.title, result.valid, shifted, first_line=start)
        )
    return results


def summarise(results: list[CheckResult]) -> CheckSummary:
    """Count valid tunes, and for each error code the tunes that have it."""
    error_tunes: Counter[str] = Counter()
    warnings = 0
    for result in results:
        codes = {item.code for item in result.diagnostics if item.severity == ERROR}
        error_tunes.update(codes)
        warnings += len(result.diagnostics) - len(result.errors)
    valid = sum(result.valid for result in results)
    return CheckSummary(len(results), valid, dict(error_tunes.most_common()), warnings)


def bar_diagnostics(bars: list[Bar]) -> list[Diagnostic]:
    """Report bars whose length does not fit the meter (see the module docstring)."""
    by_voice: dict[str, list[Bar]] = {}
    for bar in bars:
        by_voice.setdefault(bar.voice, []).append(bar)
    diagnostics = []
    for voice_bars in by_voice.values():
        diagnostics.extend(_check_voice(voice_bars))
    return diagnostics


def _checked(bar: Bar) -> bool:
    return not bar.damaged and bar.expected_ticks is not None


def _check_voice(bars: list[Bar]) -> list[Diagnostic]:
    """Check the bars of one voice, pairing short bars at section edges."""
    # A damaged bar still offers its measured length as a partner: its own fault
    # is reported, and a pickup with an unknown symbol should not also make the
    # bar it completes look short.
    # Two parts pair when together they fill the meter of either part, so a
    # pickup in a new meter may complete the last bar before the meter change.
    # The sets hold the ticks of each short part and the ticks it lacks.
    opening_ticks, opening_missing = set(), set()
    closing_ticks, closing_missing = set(), set()
    for position, bar in enumerate(bars):
        if bar.expected_ticks is None or bar.ticks >= bar.expected_ticks:
            continue
        if bar.opens_section or position == 0:
            opening_ticks.add(bar.ticks)
            opening_missing.add(bar.expected_ticks - bar.ticks)
        if bar.closes_section:
            closing_ticks.add(bar.ticks)
            closing_missing.add(bar.expected_ticks - bar.ticks)

    diagnostics = []
    for position, bar in enumerate(bars):
        if not _checked(bar) or bar.ticks == bar.expected_ticks:
            continue
        ticks, missing = bar.ticks, bar.expected_ticks - bar.ticks
        if ticks < bar.expected_ticks:
            if position == 0:
                continue
            if position == len(bars) - 1 and bar.bar_line:
                continue
            if bar.opens_section and (
                ticks in closing_missing or missing in closing_ticks
            ):
                continue
            if bar.closes_section and (
                ticks in opening_missing or missing in opening_ticks
            ):
                continue
        diagnostics.append(_bar_length_error(bar))
    return diagnostics


def _bar_length_error(bar: Bar) -> Diagnostic:
    filled = Fraction(bar.ticks, TICKS_PER_WHOLE)
    needed = Fraction(bar.expected_ticks, TICKS_PER_WHOLE)
    denominator = lcm(filled.denominator, needed.denominator)
    words = "long" if filled > needed else "short"
    message = (
        f"bar is too {words}: "
        f"{filled * denominator}/{denominator} where the meter needs "
        f"{needed * denominator}/{denominator}"
    )
    return Diagnostic(ERROR, "bar-length", message, bar.line, bar.column, bar.number)
