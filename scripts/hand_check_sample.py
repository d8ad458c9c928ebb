"""Draw a seeded random sample of tunes the checker flags, and show each fault.

usage: python scripts/hand_check_sample.py SOURCE [--size 30] [--seed 0]

For each sampled tune it prints the first error with its line of music and a
caret under the column. A bar-length error also gets the bar's text and
length, and every error gets what abc2midi printed about the same line. That
is the material for checking each verdict by hand; docs/checker.md records the
verdicts.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

from abc2midi_agreement import abc2midi_messages, bar_messages, read_tunes

from abcrnn.abc.checker import check_tune
from abcrnn.abc.events import TICKS_PER_WHOLE
from abcrnn.abc.parser import parse_tune


def flagged_sample(tunes: list[str], size: int, seed: int) -> list[int]:
    """Return the 1-based numbers of `size` invalid tunes, drawn with `seed`.

    Each tune's place in the draw is a hash of the seed and its number, so a
    change to the checker that clears or flags a few tunes changes only those
    places in the sample, not the whole sample.
    """
    flagged = [
        number
        for number, tune in enumerate(tunes, start=1)
        if not check_tune(tune).valid
    ]
    ranked = sorted(flagged, key=lambda number: _draw_key(seed, number))
    return sorted(ranked[:size])


def _draw_key(seed: int, number: int) -> str:
    return hashlib.sha256(f"{seed}:{number}".encode()).hexdigest()


def describe(tune: str, number: int, folder: Path) -> list[str]:
    """Return the lines that show the first error of one tune."""
    result = check_tune(tune, number)
    error = result.errors[0]
    lines = tune.split("\n")
    text = lines[error.line - 1] if error.line <= len(lines) else ""
    shown = [
        f"tune {number} ({result.title}): {error.code}: {error.message}",
        f"  line {error.line}: {text}",
        f"  {' ' * (len(str(error.line)) + 6 + error.column)}^",
    ]
    if error.code == "bar-length":
        shown.append(f"  unit length {_unit(tune)}, bar: {_bar_text(tune, error)}")
    for message in abc2midi_messages(tune, folder):
        if message.line == error.line or bar_messages([message]):
            shown.append(f"  abc2midi: {message}")
    return shown


def _unit(tune: str) -> str:
    """Return the value of the tune's first L: field, or "default" without one."""
    for line in tune.split("\n"):
        if line.startswith("L:"):
            return line[2:].strip()
    return "default"


def _bar_text(tune: str, error) -> str:
    """Return the bar's text from its first note to the next bar line, and length."""
    parsed = parse_tune(tune)
    place = (error.line, error.column)
    bar = next(bar for bar in parsed.bars if (bar.line, bar.column) == place)
    line = tune.split("\n")[bar.line - 1]
    end = line.find("|", bar.column - 1)
    text = line[bar.column - 1 : end if end >= 0 else len(line)]
    filled = Fraction(bar.ticks, TICKS_PER_WHOLE)
    needed = Fraction(bar.expected_ticks, TICKS_PER_WHOLE)
    return f"{text!r} = {filled} of a whole note, meter needs {needed}"


def main(argv: list[str] | None = None) -> int:
    """Print the sample of one source."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", metavar="SOURCE")
    parser.add_argument("--size", type=int, default=30, help="tunes (default: 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    args = parser.parse_args(argv)

    tunes = read_tunes(args.source)
    with tempfile.TemporaryDirectory() as folder:
        for number in flagged_sample(tunes, args.size, args.seed):
            print("\n".join(describe(tunes[number - 1], number, Path(folder))))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
