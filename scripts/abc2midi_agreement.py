"""Compare the bar-length verdicts of abcrnn's checker and abc2midi, tune by tune.

usage: python scripts/abc2midi_agreement.py SOURCE... [--json FILE] [--examples N]

A SOURCE is an .abc file, a folder of .abc files or a music21 collection name
(oneills1850, ryansMammoth, airdsAirs). Tunes are checked as written in the
files, without the normalising or deduplication that training applies.

Our checker calls a tune bar-faulty when it reports a `bar-length` error.
abc2midi calls it bar-faulty when it prints a message such as "Track 0 Bar 4
has 7 time units while the time signature has 6" (also the copies that end in
"in repeat", printed while it plays a repeat). Each abc2midi message that our
checker does not share is put into a kind (ABC2MIDI_KINDS) by looking at our
bar at the message's position. The kinds were found by reading the
disagreements by hand; docs/checker.md gives an example of each.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from abcrnn.abc.checker import CheckResult, result_for
from abcrnn.abc.events import Bar, ParsedTune
from abcrnn.abc.midi import AbcMessage, abc_to_midi
from abcrnn.abc.parser import parse_tune
from abcrnn.abc.tunes import split_tunes
from abcrnn.atomic import write_text_atomic
from abcrnn.corpus import read_abc_file, resolve_source

BAR_MESSAGE = re.compile(
    r"Bar (?P<bar>\d+) has (?P<units>\d+(?:/\d+)?) time units while the time "
    r"signature has (?P<meter>\d+(?:/\d+)?)(?P<repeat> in repeat)?"
)
# abc2midi messages that describe what it assumed, not a fault in the tune. The
# back quote is ABC 2.1 spacing between notes, which abc2midi 5.02 still reports.
NOTICES = (
    "Assuming repeat",
    "replacing |: with double repeat",
    "Ignoring reserved character `",
)

# Kinds of abc2midi message about a bar that our checker accepts. All but
# "other-fault" and "review" are abc2midi's own rules. An "other-fault" bar
# contains an error that our checker reports instead of its length, and a
# "review" message is not explained by any kind.
ABC2MIDI_KINDS = {
    "split-bar": "a short bar at a section edge (pickup, or part of a bar split "
    "by a repeat, ending or double bar): abc2midi reports each part",
    "carry": "abc2midi adds the time of a short bar before a repeat or ending "
    "to the next bar it plays",
    "mid-bar-ending": "an ending mark inside a bar: abc2midi adds the notes of "
    "the second ending to the next bar",
    "fermata": "a fermata (H or !fermata!): abc2midi lengthens the note",
    "roll-broken": "a roll (~) beside a broken rhythm (> or <): abc2midi "
    "miscounts the pair",
    "meter-change": "a split bar across a meter change: abc2midi adds the parts "
    "in different units",
    "abc2midi-error": "abc2midi reports a syntax error in the tune (for example "
    "it reads the invisible bar line [|] as a chord), so its later counts are off",
    "other-fault": "the bar holds another error that our checker reports, so it "
    "does not measure the bar",
    "review": "not explained by any rule above",
}
ABC2MIDI_RULES = frozenset(ABC2MIDI_KINDS) - {"other-fault", "review"}

# Kinds of bar-length error of our checker that abc2midi does not share.
OUR_KINDS = {
    "unequal-broken-rhythm": "a broken rhythm between notes of unequal length: "
    "abc2midi does not apply it, ABC 2.1 does",
    "abc2midi-silent": "abc2midi prints no bar message for the tune (it stops "
    "checking after some constructs)",
    "other-faults": "the tune has other errors that change how its bars are read",
}

# Notation that explains a longer count in abc2midi (see ABC2MIDI_KINDS).
_QUOTED = re.compile(r'"[^"]*"|![^!]*!|\+[^+]*\+|\[[A-Za-z]:[^\]]*\]')
_FERMATA = re.compile(r"H|!(?:inverted)?fermata!")
_ROLL_BROKEN = re.compile(r"~[_^=]*[A-Ga-g][,']*[0-9/]*\)?\s*[<>]|[<>]\s*\(?~")
_MID_BAR_ENDING = re.compile(r"[^|:\s\\]\s*\[\d")


@dataclass(frozen=True)
class BarMessage:
    """One abc2midi bar-length message: the bar's time and the meter's, in beats.

    line and column are 1-based and point at the bar line after the bar.
    """

    line: int
    column: int
    units: Fraction
    meter_units: Fraction
    in_repeat: bool

    @property
    def share(self) -> Fraction:
        """Return the bar's length as a share of a full bar."""
        return self.units / self.meter_units


@dataclass(frozen=True)
class TuneComparison:
    """Both verdicts on one tune and, where they differ, the kinds of difference."""

    source: str
    index: int  # counts from 1 within the source
    title: str
    valid: bool  # our checker finds no error at all
    ours: bool  # our checker reports a bar-length error
    clean_by_messages: bool  # abc2midi prints nothing but NOTICES
    theirs: bool  # abc2midi prints a bar-length message
    kinds: tuple[str, ...] = ()

    @property
    def agrees(self) -> bool:
        """Return True when both tools give the same bar-length verdict."""
        return self.ours == self.theirs

    @property
    def agrees_after_rules(self) -> bool:
        """Return True when they agree once abc2midi's listed rules are set aside."""
        if self.agrees or self.ours:
            return self.agrees
        return set(self.kinds) <= ABC2MIDI_RULES


def bar_messages(messages: Iterable[AbcMessage]) -> list[BarMessage]:
    """Return abc2midi's bar-length messages; other messages are left out."""
    found = []
    for message in messages:
        match = BAR_MESSAGE.search(message.text)
        if match is None or message.line is None:
            continue
        found.append(
            BarMessage(
                message.line,
                message.column or 1,
                Fraction(match["units"]),
                Fraction(match["meter"]),
                bool(match["repeat"]),
            )
        )
    return found


def clean_by_messages(messages: Iterable[AbcMessage]) -> bool:
    """Return True when abc2midi printed nothing but notices about repeats."""
    return all(message.text.startswith(NOTICES) for message in messages)


def locate_bar(bars: Sequence[Bar], line: int, column: int) -> Bar | None:
    """Return the last bar that starts before (line, column), or None."""
    before = [bar for bar in bars if (bar.line, bar.column) < (line, column)]
    return max(before, key=lambda bar: (bar.line, bar.column), default=None)


def _share(bar: Bar) -> Fraction:
    return Fraction(bar.ticks, bar.expected_ticks)


def _bar_text(lines: list[str], bar: Bar, message: BarMessage) -> str:
    """Return the text from the bar line before `bar` to the message's position."""
    first = lines[bar.line - 1]
    start = first.rfind("|", 0, bar.column - 1) + 1
    end_line = min(message.line, len(lines))
    if end_line == bar.line:
        text = first[start : message.column]
    else:
        middle = lines[bar.line : end_line - 1]
        last = lines[end_line - 1][: message.column]
        text = "\n".join([first[start:], *middle, last])
    return _QUOTED.sub("", text)


def classify_message(
    parsed: ParsedTune,
    lines: list[str],
    flagged: set,
    message: BarMessage,
    abc2midi_error: bool = False,
) -> str:
    """Return the kind of one abc2midi message, or "both" when we flag the bar too.

    `flagged` contains the (line, column) of each bar our checker reports, and
    `abc2midi_error` is True when abc2midi printed an error about the tune.
    Messages printed while abc2midi plays a repeat point at the repeated bar
    rather than at the bar it measured, so some rules look at the whole tune.
    """
    bar = locate_bar(parsed.bars, message.line, message.column) or parsed.bars[0]
    if (bar.line, bar.column) in flagged:
        return "both"
    if bar.damaged or bar.expected_ticks is None:
        return "other-fault"
    measured = [item for item in parsed.bars if item.expected_ticks]
    short = [item for item in measured if item.ticks < item.expected_ticks]
    ours, theirs = _share(bar), message.share

    if theirs == ours and bar.ticks < bar.expected_ticks:
        return "split-bar"
    if theirs < 1 and any(_share(item) == theirs for item in short):
        return "split-bar"
    text = _bar_text(lines, bar, message)
    whole = _QUOTED.sub("", "\n".join(lines))
    if theirs > ours and _FERMATA.search(text):
        return "fermata"
    if _ROLL_BROKEN.search(whole if message.in_repeat else text):
        return "roll-broken"
    if any(ours + _share(item) == theirs for item in short):
        return "carry"
    if theirs > ours and _MID_BAR_ENDING.search(whole):
        return "mid-bar-ending"
    if len({item.expected_ticks for item in measured}) > 1:
        return "meter-change"
    if _ROLL_BROKEN.search(whole):
        return "roll-broken"
    if abc2midi_error:
        return "abc2midi-error"
    return "review"


def classify_ours_only(
    result: CheckResult, messages: Sequence[AbcMessage]
) -> tuple[str, ...]:
    """Return why our checker flags bars that abc2midi does not (OUR_KINDS)."""
    flagged_lines = {item.line for item in result.errors if item.code == "bar-length"}
    other_errors = [item for item in result.errors if item.code != "bar-length"]
    unequal = any(
        message.text.startswith("Cannot apply broken rhythm")
        and message.line in flagged_lines
        for message in messages
    )
    if unequal:
        return ("unequal-broken-rhythm",)
    if other_errors:
        return ("other-faults",)
    return ("abc2midi-silent",)


def compare_tune(
    tune: str, messages: Sequence[AbcMessage], source: str = "", index: int = 1
) -> TuneComparison:
    """Compare our checker's verdict on `tune` with abc2midi's `messages` about it."""
    parsed = parse_tune(tune)
    result = result_for(parsed, index)
    ours_bars = {
        (item.line, item.column) for item in result.errors if item.code == "bar-length"
    }
    theirs = bar_messages(messages)
    kinds: tuple[str, ...] = ()
    if ours_bars and not theirs:
        kinds = classify_ours_only(result, messages)
    elif theirs and not ours_bars:
        lines = tune.split("\n")
        error = any(message.kind == "error" for message in messages)
        found = {
            classify_message(parsed, lines, ours_bars, item, error) for item in theirs
        }
        kinds = tuple(sorted(found - {"both"}))
    return TuneComparison(
        source=source,
        index=index,
        title=parsed.title,
        valid=result.valid,
        ours=bool(ours_bars),
        clean_by_messages=clean_by_messages(messages),
        theirs=bool(theirs),
        kinds=kinds,
    )


def abc2midi_messages(tune: str, folder: Path) -> tuple[AbcMessage, ...]:
    """Convert `tune` with abc2midi into `folder` and return its messages."""
    return abc_to_midi(tune, folder / "tune.mid").messages


def read_tunes(source: str) -> list[str]:
    """Return the tunes of a file, folder or collection, as written."""
    _kind, _path, files = resolve_source(source)
    tunes = []
    for file in files:
        tunes.extend(split_tunes(read_abc_file(file, [])).tunes)
    return tunes


def compare_source(source: str) -> list[TuneComparison]:
    """Run both tools on every tune of `source` and compare them."""
    comparisons = []
    with tempfile.TemporaryDirectory(prefix="abc2midi-agreement-") as folder:
        for index, tune in enumerate(read_tunes(source), start=1):
            messages = abc2midi_messages(tune, Path(folder))
            comparisons.append(compare_tune(tune, messages, source, index))
    return comparisons


def summarise(comparisons: Sequence[TuneComparison]) -> dict[str, object]:
    """Return the figures of one source: shares, agreement and kinds of difference."""
    total = len(comparisons)
    kinds: Counter[str] = Counter()
    for item in comparisons:
        kinds.update(item.kinds)
    return {
        "tunes": total,
        "valid_share": _ratio(sum(item.valid for item in comparisons), total),
        "ours_bar_faulty": sum(item.ours for item in comparisons),
        "abc2midi_clean_share": _ratio(
            sum(item.clean_by_messages for item in comparisons), total
        ),
        "abc2midi_bar_faulty": sum(item.theirs for item in comparisons),
        "both_bar_faulty": sum(item.ours and item.theirs for item in comparisons),
        "ours_only": sum(item.ours and not item.theirs for item in comparisons),
        "abc2midi_only": sum(item.theirs and not item.ours for item in comparisons),
        "agreement": _ratio(sum(item.agrees for item in comparisons), total),
        "agreement_after_rules": _ratio(
            sum(item.agrees_after_rules for item in comparisons), total
        ),
        "tunes_by_kind": dict(kinds.most_common()),
    }


def _ratio(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


def report_lines(
    source: str, comparisons: Sequence[TuneComparison], examples: int
) -> list[str]:
    """Return the readable report of one source."""
    figures = summarise(comparisons)
    lines = [
        f"{source}: {figures['tunes']} tunes",
        f"  our checker: {figures['valid_share']:.1%} valid, "
        f"{figures['ours_bar_faulty']} with a bar-length error",
        f"  abc2midi: {figures['abc2midi_clean_share']:.1%} clean by its messages, "
        f"{figures['abc2midi_bar_faulty']} with a bar-length message",
        f"  both {figures['both_bar_faulty']}, ours only {figures['ours_only']}, "
        f"abc2midi only {figures['abc2midi_only']}",
        f"  agreement {figures['agreement']:.1%}, after abc2midi's listed rules "
        f"{figures['agreement_after_rules']:.1%}",
    ]
    for kind, count in figures["tunes_by_kind"].items():
        tunes = [item for item in comparisons if kind in item.kinds][:examples]
        listed = ", ".join(f"{item.index} ({item.title})" for item in tunes)
        noun = "tune" if count == 1 else "tunes"
        lines.append(f"  {kind}: {count} {noun}, e.g. {listed}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Compare both tools on each SOURCE, print the report, optionally save JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", metavar="SOURCE")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the figures and every disagreement as JSON (default: off)",
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=5,
        metavar="N",
        help="tunes listed for each kind (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    everything: dict[str, object] = {"kinds": {**ABC2MIDI_KINDS, **OUR_KINDS}}
    for source in args.sources:
        comparisons = compare_source(source)
        print("\n".join(report_lines(source, comparisons, args.examples)))
        everything[source] = {
            "summary": summarise(comparisons),
            "disagreements": [asdict(item) for item in comparisons if not item.agrees],
        }
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(everything, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
