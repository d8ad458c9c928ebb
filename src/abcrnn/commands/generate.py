"""`abcrnn generate`: compose tunes with a trained model, then render them."""

from __future__ import annotations

import argparse
from pathlib import Path

from abcrnn.commands.options import add_sampling_arguments, sampling_settings


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `generate` subcommand to the CLI."""
    parser = subparsers.add_parser(
        "generate",
        help="compose new tunes with a trained model",
        description="Generate tunes from a run folder (its checkpoints/best.pt, else "
        "last.pt) or a checkpoint file. Writes tunes.abc and tune-NN.abc to the "
        "output folder, then MIDI and WAV for each tune unless --no-render. The same "
        "checkpoint, settings and seed give the same tunes. Exits with 1 when a "
        "tune reaches --max-length without ending, when a tune fails to render, or "
        "when --only-valid finds too few valid tunes.",
    )
    parser.add_argument(
        "source", metavar="RUN_DIR_OR_CHECKPOINT", type=Path, help="run folder or .pt"
    )
    parser.add_argument(
        "--num-tunes",
        type=int,
        default=5,
        metavar="N",
        help="number of tunes (default: %(default)s)",
    )
    add_sampling_arguments(parser)
    parser.add_argument(
        "--top-k",
        type=int,
        default=0,
        metavar="K",
        help="sample among the K most likely characters, 0 = all "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=1.0,
        metavar="P",
        help="sample among the most likely characters whose probabilities sum to "
        "P, in (0, 1], 1 = all (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: <run folder>/generated)",
    )
    parser.add_argument(
        "--no-render",
        action="store_true",
        help="write only the ABC files, no MIDI or WAV (default: render)",
    )
    parser.add_argument(
        "--only-valid",
        action="store_true",
        help="keep sampling batches until --num-tunes tunes pass the ABC checker; "
        "exits with 1 when --max-attempts runs out first (default: off)",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        metavar="N",
        help="with --only-valid, the most tunes sampled in all "
        "(default: 10 x --num-tunes)",
    )
    parser.set_defaults(func=run)
    return parser


def default_out_dir(source: Path) -> Path:
    """Return <run folder>/generated for a run folder or a checkpoint inside one."""
    if source.is_dir():
        return source / "generated"
    if source.parent.name == "checkpoints":
        return source.parent.parent / "generated"
    return source.parent / "generated"


def run(args: argparse.Namespace) -> int:
    """Generate, write and render the tunes; return 1 if any did not finish.

    Also return 1 when a tune failed to render, and with --only-valid when fewer
    tunes passed the checker than asked.
    """
    from abcrnn.checkpoint import load_for_sampling
    from abcrnn.devices import resolve_device
    from abcrnn.sampling import GenerationResult, SampleConfig, generate_tunes

    settings = SampleConfig(
        num_tunes=args.num_tunes,
        top_k=args.top_k,
        top_p=args.top_p,
        **sampling_settings(args),
    )
    device = resolve_device(args.device)
    model, vocab, info = load_for_sampling(args.source, device)
    print(f"model: {info['path']} (step {info['step']})")
    checked = None
    if args.only_valid:
        checked = _generate_valid(model, vocab, settings, args, device)
        if not checked.tunes:
            return 1
        result = GenerationResult(checked.tunes)
    else:
        result = generate_tunes(model, vocab, settings, device)

    out = args.out or default_out_dir(args.source)
    paths = write_tunes(result.tunes, out)
    for path, tune in zip(paths[1:], result.tunes, strict=True):
        print(f"{path}: {_title(tune)}, {len(tune)} characters")
    print(f"all tunes: {paths[0]}")
    failed_renders = 0 if args.no_render else _render(result.tunes, out)

    if checked is not None and not checked.complete:
        return 1
    status = 0
    if failed_renders:
        print(f"{failed_renders} of {len(result.tunes)} tunes failed to render")
        status = 1
    if result.unfinished:
        print(
            f"{result.unfinished} of {len(result.tunes)} tunes reached --max-length "
            f"{args.max_length} without ending in a blank line; raise --max-length "
            "or lower --temperature"
        )
        status = 1
    return status


def _generate_valid(model, vocab, settings, args: argparse.Namespace, device):
    """Sample until --num-tunes tunes pass the checker; print how it went."""
    from abcrnn.checked_sampling import generate_valid_tunes

    cap = args.max_attempts if args.max_attempts is not None else 10 * args.num_tunes
    checked = generate_valid_tunes(model, vocab, settings, cap, device)
    print(
        f"--only-valid: sampled {checked.attempts} tunes, {checked.passed} passed "
        f"the checker, kept {len(checked.tunes)} of {checked.requested}"
    )
    if not checked.complete:
        print(
            f"only {len(checked.tunes)} of {checked.requested} tunes passed within "
            f"--max-attempts {cap}; raise --max-attempts, lower --temperature or "
            "train longer"
        )
    return checked


def write_tunes(tunes: list[str], out: Path) -> list[Path]:
    """Write tunes.abc (all tunes) and tune-NN.abc (one each); return their paths.

    File names match those of abcrnn.render.render_tunes, which rewrites the
    per-tune files with the same text.
    """
    from abcrnn.atomic import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    paths = [write_text_atomic(out / "tunes.abc", "\n\n".join(tunes) + "\n")]
    width = max(2, len(str(len(tunes))))
    for index, tune in enumerate(tunes, start=1):
        paths.append(
            write_text_atomic(out / f"tune-{index:0{width}d}.abc", tune + "\n")
        )
    return paths


def _title(tune: str) -> str:
    for line in tune.splitlines():
        if line.startswith("T:"):
            return repr(line[2:].strip())
    return "untitled"


def _render(tunes: list[str], out: Path) -> int:
    """Render each tune to MIDI and WAV; return how many tunes failed to render.

    A missing converter (abc2midi or the audio backend) fails every tune.
    """
    from abcrnn.errors import RenderError

    try:
        from abcrnn.render import render_tunes, write_index_html
    except ModuleNotFoundError as error:
        if error.name != "abcrnn.render":
            raise
        print("rendering skipped: abcrnn.render is not installed")
        return 0
    try:
        report = render_tunes(tunes, out)
    except RenderError as error:
        print(f"rendering failed: {error}; pass --no-render to skip rendering")
        return len(tunes)
    for tune in report.tunes:
        outcome = f"{tune.wav_path}" if tune.ok else f"not rendered: {tune.reason}"
        print(f"tune {tune.index}: {outcome}")
    print(f"audio backend: {', '.join(report.backends) or 'none'}")
    print(f"index: {write_index_html(report, out, title='Generated tunes')}")
    return report.failed
