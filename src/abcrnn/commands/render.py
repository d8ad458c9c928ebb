"""`abcrnn render`: turn each tune of an ABC file into MIDI, WAV and an index page."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from abcrnn.render import TuneRender

# "auto" plus abcrnn.audio.BACKENDS, written out so that `abcrnn --help` does not
# import numpy and mido.
BACKEND_CHOICES = ("auto", "soundfont", "timidity", "fluidsynth", "sine")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `render` subcommand to the CLI."""
    parser = subparsers.add_parser(
        "render",
        help="render the tunes of an ABC file to MIDI, WAV and an HTML page",
        description="Write <stem>-NN.abc, .mid and .wav for each tune of FILE, and an "
        "index.html that plays them. Exits with 1 when any tune fails to render.",
    )
    parser.add_argument("file", metavar="FILE", help="ABC file with one or more tunes")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder, created if needed (default: the folder of FILE)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="synthesizer for the WAV files, where auto picks the best one installed "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=44100,
        metavar="HZ",
        help="WAV sample rate in Hz (default: %(default)s)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="count a tune as failed when abc2midi reports an error, even if it "
        "wrote a MIDI file (default: off)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Render FILE, print one line per tune, and return 1 if any tune failed."""
    from abcrnn.errors import RenderError
    from abcrnn.render import render_file, write_index_html

    path = Path(args.file)
    if not path.is_file():
        raise RenderError(f"ABC file not found or not a file: {path}")
    report = render_file(
        path,
        out_dir=args.out,
        backend=args.backend,
        sample_rate=args.sample_rate,
        strict=args.strict,
    )
    for tune in report.tunes:
        print(_tune_line(tune))
    index = write_index_html(report, report.out_dir, title=path.name)

    backends = ", ".join(report.backends) or "none"
    print(f"audio backend: {backends}")
    print(f"index: {index}")
    rendered = len(report.tunes) - report.failed
    print(f"{rendered} of {len(report.tunes)} tunes rendered, {report.failed} failed")
    return 1 if report.failed else 0


def _tune_line(tune: TuneRender) -> str:
    """Return a one-line summary of one tune's outcome."""
    name = tune.abc_path.stem
    if not tune.ok:
        return f"{name}  FAILED  {tune.title}: {tune.reason}"
    line = f"{name}  ok  {tune.title} ({tune.seconds:.1f} s, {tune.backend})"
    errors = [m for m in tune.messages if m.kind == "error"]
    if errors:
        line += f"; abc2midi: {len(errors)} error(s), first: {errors[0]}"
    return line
