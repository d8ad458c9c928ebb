"""`abcrnn check`: report faults in ABC files, tune by tune, and count valid tunes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from abcrnn.abc.checker import CheckResult, CheckSummary


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `check` subcommand to the CLI."""
    parser = subparsers.add_parser(
        "check",
        help="check ABC tunes for notation faults and bars that do not fit the meter",
        description="Print each fault as FILE:LINE:COLUMN with the tune number, then "
        "a summary line. Exits with 1 when any tune has an error, 0 when all are "
        "valid, and 2 when a file cannot be read.",
    )
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="ABC file with one or more tunes, or - for standard input",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with every tune and a summary (default: off)",
    )
    parser.add_argument(
        "--errors-only",
        action="store_true",
        help="leave warnings out of the per-tune lines (default: off)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Check every FILE, print the report, and return 1 if any tune is invalid."""
    from abcrnn.abc.checker import check_text, summarise

    checked = [(name, check_text(_read(name))) for name in args.files]
    everything = [result for _name, results in checked for result in results]
    summary = summarise(everything)
    if args.json:
        print(json.dumps(_json_report(checked, summary), indent=1))
    else:
        for name, results in checked:
            for result in results:
                for line in _diagnostic_lines(name, result, args.errors_only):
                    print(line)
        print(summary_line(summary))
    return 1 if summary.invalid else 0


def _read(name: str) -> str:
    """Return the text of FILE, or of standard input for "-"."""
    from abcrnn.errors import CorpusError

    if name == "-":
        return sys.stdin.read()
    path = Path(name)
    if not path.is_file():
        raise CorpusError(f"ABC file not found or not a file: {path}")
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise CorpusError(f"cannot read {path}: {error.strerror}") from error


def _diagnostic_lines(name: str, result: CheckResult, errors_only: bool):
    """Yield one line per diagnostic, e.g. `f.abc:12:5: error: tune 3 (...)`."""
    title = f" ({result.title})" if result.title else ""
    for item in result.diagnostics:
        if errors_only and item.severity != "error":
            continue
        where = f"tune {result.index}{title}"
        if item.bar is not None:
            where += f", bar {item.bar}"
        yield (
            f"{name}:{item.line}:{item.column}: {item.severity}: {where}: "
            f"{item.message} [{item.code}]"
        )


def summary_line(summary: CheckSummary) -> str:
    """Return e.g. "804 tunes: 790 valid, 14 invalid (bar-length 10, ...)"."""
    line = f"{summary.tunes} tunes: {summary.valid} valid, {summary.invalid} invalid"
    if summary.error_tunes:
        counts = ", ".join(f"{code} {n}" for code, n in summary.error_tunes.items())
        line += f" (tunes with each error: {counts})"
    return line


def _json_report(checked, summary: CheckSummary) -> dict[str, object]:
    tunes = []
    for name, results in checked:
        for result in results:
            tunes.append({"file": name, **result.to_dict()})
    return {"tunes": tunes, "summary": summary.to_dict()}
