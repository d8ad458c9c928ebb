"""Measure how many tunes per second `abcrnn check` handles, and how many are clean.

Usage: python benchmarks/check_speed.py FILE_OR_FOLDER [FILE_OR_FOLDER ...]

A folder means all *.abc files in it, read as one collection. For each
argument the script prints the number of tunes, the share with no error, the
error codes found most often, and the speed of check_text on one core. Speed
is measured in CPU time of this process (time.process_time), the best of
--repeat runs after one warm-up run, so that other programs on the machine
disturb the figure less.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from abcrnn.abc.checker import check_text, summarise


def read_collection(path: Path) -> str:
    """Return the text of one file, or of all .abc files in a folder joined."""
    if path.is_dir():
        files = sorted(path.glob("*.abc"))
        return "\n\n".join(
            file.read_text(encoding="utf-8", errors="replace") for file in files
        )
    return path.read_text(encoding="utf-8", errors="replace")


def measure(text: str, repeat: int) -> float:
    """Return the best CPU seconds that check_text takes on `text`."""
    check_text(text)
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        check_text(text)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="ABC files or folders")
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="timed runs per input (default: %(default)s)",
    )
    args = parser.parse_args()
    for path in args.paths:
        text = read_collection(path)
        summary = summarise(check_text(text))
        seconds = measure(text, args.repeat)
        share = 100 * summary.valid / max(1, summary.tunes)
        top = ", ".join(
            f"{code} {count}" for code, count in list(summary.error_tunes.items())[:5]
        )
        speed = summary.tunes / seconds
        print(
            f"{path.name}: {summary.tunes} tunes, {summary.valid} clean "
            f"({share:.1f} %), {speed:,.0f} tunes/s; "
            f"tunes with each error: {top or 'none'}"
        )


if __name__ == "__main__":
    main()
