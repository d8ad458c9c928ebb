"""`abcrnn corpus`: load corpus sources and describe the tunes, split and vocabulary."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from abcrnn.corpus import COLLECTIONS, DEFAULT_SOURCE

TOP = 10  # meters and keys listed in the text output
EXAMPLE_LENGTH = 20  # characters of the vectorised example


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `corpus` subcommand."""
    parser = subparsers.add_parser(
        "corpus",
        help="load a corpus and show its tunes, split and vocabulary",
        description="Read ABC sources, split them into tunes, normalise and "
        "deduplicate them, split them into training and validation tunes, and "
        "show the vocabulary and what was dropped.",
    )
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        default=[DEFAULT_SOURCE],
        help="an .abc file, a folder searched for *.abc files, or a collection "
        f"shipped with music21 ({', '.join(COLLECTIONS)}); several may be given "
        f"(default: {DEFAULT_SOURCE})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (default: off)"
    )
    parser.add_argument(
        "--no-normalise",
        dest="normalise",
        action="store_false",
        help="keep comments, directives and every header field as written "
        "(default: normalise)",
    )
    parser.add_argument(
        "--drop-titles", action="store_true", help="remove T: lines (default: off)"
    )
    parser.add_argument(
        "--drop-chords",
        action="store_true",
        help='remove "..." chord symbols and annotations (default: off)',
    )
    parser.add_argument(
        "--drop-decorations",
        action="store_true",
        help="remove !...! and +...+ decorations and shorthands such as ~ "
        "(default: off)",
    )
    parser.add_argument(
        "--no-dedupe",
        dest="deduplicate",
        action="store_false",
        help="keep tunes that repeat an earlier tune (default: deduplicate)",
    )
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="share of tunes held out for validation, between 0 and 1 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="random seed of the train/valid split (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the corpus, then print its description as text or JSON."""
    summary = describe_corpus(args)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(format_summary(summary))
    return 0


def describe_corpus(args: argparse.Namespace) -> dict[str, object]:
    """Load and split the corpus and return everything the command reports."""
    from abcrnn.corpus import (
        CorpusOptions,
        corpus_stats,
        join_tunes,
        load_corpus,
        split_corpus,
    )
    from abcrnn.vocabulary import Vocabulary

    options = CorpusOptions(
        normalise=args.normalise,
        drop_titles=args.drop_titles,
        drop_chords=args.drop_chords,
        drop_decorations=args.drop_decorations,
        deduplicate=args.deduplicate,
    )
    corpus = load_corpus(args.sources, options)
    train, valid = split_corpus(corpus.tunes, args.valid_fraction, args.seed)
    vocabulary = Vocabulary.from_text(join_tunes(corpus.tunes))
    stats = corpus_stats(corpus.tunes)
    example = train[0][:EXAMPLE_LENGTH]
    report = corpus.report

    return {
        "sources": [asdict(source) for source in report.sources],
        "files": report.files_read,
        "tunes_found": report.tunes_found,
        "tunes": report.tunes_kept,
        "characters": stats["characters"],
        "train": {"tunes": len(train), "characters": len(join_tunes(train))},
        "valid": {"tunes": len(valid), "characters": len(join_tunes(valid))},
        "split": {"valid_fraction": args.valid_fraction, "seed": args.seed},
        "options": asdict(options),
        "vocabulary": list(vocabulary.chars),
        "example": {"text": example, "ids": vocabulary.encode(example)},
        "meters": stats["meters"],
        "keys": stats["keys"],
        "lengths": stats["lengths"],
        "dropped": report.dropped(),
        "warnings": report.warnings,
    }


def format_summary(summary: dict) -> str:
    """Format the command's summary as the text report."""
    lines = [
        "Sources:",
        *(
            f"  {s['source']} ({s['kind']}, {s['files']} files, {s['tunes']} tunes)"
            for s in summary["sources"]
        ),
        f"Tunes: {summary['tunes']} kept of {summary['tunes_found']} found",
        f"Split (seed {summary['split']['seed']}, valid fraction "
        f"{summary['split']['valid_fraction']}):",
    ]
    for name in ("train", "valid"):
        part = summary[name]
        lines.append(
            f"  {name:<5} {part['tunes']:>6} tunes {part['characters']:>10,} characters"
        )
    lines += _format_vocabulary(summary["vocabulary"], summary["example"])
    lines += _format_counts("Meters", summary["meters"])
    lines += _format_counts("Keys", summary["keys"])

    lengths = summary["lengths"]
    lines.append(
        f"Tune length in characters: min {lengths['min']}, median "
        f"{lengths['median']}, mean {lengths['mean']}, max {lengths['max']}"
    )
    lines += _format_dropped(summary["dropped"])
    if summary["warnings"]:
        lines.append(f"Warnings ({len(summary['warnings'])}):")
        lines += [f"  {warning}" for warning in summary["warnings"]]
    return "\n".join(lines)


def _format_vocabulary(chars: list[str], example: dict) -> list[str]:
    """Format the vocabulary as id/character pairs, 8 a row, and the example."""
    cells = [f"{i:>3} {char!r:<6}" for i, char in enumerate(chars)]
    rows = ["  " + " ".join(cells[i : i + 8]).rstrip() for i in range(0, len(cells), 8)]
    return [
        f"Vocabulary: {len(chars)} characters (id, character)",
        *rows,
        f"Example: {example['text']!r}",
        f"  ids: {example['ids']}",
    ]


def _format_counts(title: str, counts: dict[str, int]) -> list[str]:
    """Format the TOP most common values of a count table on one line."""
    top = list(counts.items())[:TOP]
    listed = ", ".join(f"{value} {count}" for value, count in top)
    more = f" (+{len(counts) - TOP} more)" if len(counts) > TOP else ""
    return [f"{title} (top {TOP} of {len(counts)}): {listed}{more}"]


def _format_dropped(dropped: dict) -> list[str]:
    """Format what splitting, normalisation and deduplication dropped."""
    fields = ", ".join(f"{letter}: {n}" for letter, n in dropped["field_lines"].items())
    return [
        "Dropped:",
        f"  duplicate tunes        {dropped['duplicate_tunes']}",
        f"  tunes without music    {dropped['tunes_without_music']}",
        f"  lines outside tunes    {dropped['lines_outside_tunes']} "
        f"in {dropped['fragments']} fragments",
        f"  field lines            {sum(dropped['field_lines'].values())}"
        + (f" ({fields})" if fields else ""),
        f"  %% directives          {dropped['directives']}",
        f"  comments               {dropped['comments']}",
        f"  blank lines in tunes   {dropped['blank_lines']}",
        f"  titles                 {dropped['titles']}",
        f"  chord symbols          {dropped['chords']}",
        f"  decorations            {dropped['decorations']}",
    ]
