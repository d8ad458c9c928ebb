"""`abcrnn evaluate`: score a trained run's tunes next to the corpus's real tunes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from abcrnn.commands.options import add_sampling_arguments, sampling_settings


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `evaluate` subcommand to the CLI."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained run: valid, new and corpus-like tunes",
        description="Sample tunes from RUN_DIR's checkpoint (best.pt, else last.pt) "
        "and report the share that pass the checker, whose bars all add up and "
        "that convert to MIDI, validation bits per character, novelty against the "
        "training tunes, and how far their meters, keys, modes and lengths are "
        "from the training corpus. The validation tunes get the same figures, as "
        "the ceiling. Writes RUN_DIR/evaluation.json and RUN_DIR/evaluation.md.",
    )
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", type=Path, help="run folder made by abcrnn train"
    )
    parser.add_argument(
        "--num-tunes",
        type=int,
        default=100,
        metavar="N",
        help="tunes to sample (default: %(default)s)",
    )
    add_sampling_arguments(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the JSON report instead of the readable summary (default: off)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Evaluate the run, write both reports, print one of them; return 0."""
    from abcrnn.devices import resolve_device
    from abcrnn.evaluate import EvaluateConfig, evaluate_run, write_evaluation
    from abcrnn.evaluation_report import evaluation_markdown

    config = EvaluateConfig(num_tunes=args.num_tunes, **sampling_settings(args))
    report = evaluate_run(args.run_dir, config, resolve_device(args.device))
    json_path, md_path = write_evaluation(args.run_dir, report)
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
    else:
        print(evaluation_markdown(report), end="")
        print(f"\nwritten: {json_path} and {md_path}")
    return 0
