"""`abcrnn demo`: the whole job in one command: train, compose, render, show."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

DEFAULT_RUN_DIR = Path("runs/demo")

# Generation settings of the demo. A temperature below 1.0 favours the characters the
# model finds likeliest, at some cost in variety.
DEMO_TEMPERATURE = 0.8
DEMO_MAX_LENGTH = 1500
# Batches to sample before giving up on reaching --num-tunes rendered tunes.
MAX_BATCHES = 4


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `demo` subcommand to the CLI."""
    parser = subparsers.add_parser(
        "demo",
        help="train on the default corpus, compose tunes, render them to MIDI and WAV",
        description="Run the whole job: train the `default` preset on O'Neill's "
        "Music of Ireland (or --corpus), generate tunes, render each to MIDI and "
        "WAV, and write an index.html that shows and plays them. Running it again "
        "with the same --run-dir resumes or reuses the trained model.",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=DEFAULT_RUN_DIR,
        metavar="DIR",
        help="run folder (default: %(default)s)",
    )
    parser.add_argument(
        "--preset",
        choices=("default", "lab"),
        default="default",
        help="training settings (default: %(default)s)",
    )
    parser.add_argument(
        "--corpus",
        nargs="+",
        default=None,
        metavar="SOURCE",
        help="ABC files, folders or collection names (default: oneills1850)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="optimizer steps (default: the preset's, 1000 for default)",
    )
    parser.add_argument(
        "--num-tunes",
        type=int,
        default=8,
        metavar="N",
        help="tunes to compose and render (default: %(default)s)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=DEMO_TEMPERATURE,
        metavar="T",
        help="sampling temperature, 0 = greedy (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default: %(default)s)"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train (or resume), compose, render; return 1 when no tune could be rendered."""
    from abcrnn.config import resolve_config

    overrides = {"steps": args.steps, "seed": args.seed}
    if args.corpus:
        overrides["corpus"] = tuple(args.corpus)
    config = resolve_config(args.preset, overrides)
    run_dir = args.run_dir

    result = _train(config, run_dir)
    if result.status == "nothing to do":
        print(f"training already finished at step {result.step}")
    else:
        print(
            f"training {result.status} at step {result.step} in {result.seconds:.0f} s"
        )
    tunes_dir = run_dir / "tunes"
    report = _compose(run_dir, tunes_dir, args)
    _print_summary(run_dir, result, report)
    return 0 if report.tunes and report.failed == 0 else 1


def _train(config, run_dir: Path):
    """Train `config` into `run_dir`, resuming when the folder contains a checkpoint."""
    from abcrnn.training import train
    from abcrnn.training_samples import sample_callback

    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    if resume:
        print(f"resuming {run_dir} (delete the folder to start over)")
    else:
        print(f"training into {run_dir}")
    callbacks = [sample_callback(run_dir, config)] if config.sample_every else []
    return train(config, run_dir, resume=resume, callbacks=callbacks, progress=True)


def _compose(run_dir: Path, tunes_dir: Path, args: argparse.Namespace):
    """Generate until `args.num_tunes` tunes render, within MAX_BATCHES batches."""
    from abcrnn.checkpoint import load_for_sampling
    from abcrnn.commands.generate import write_tunes
    from abcrnn.render import render_tunes, write_index_html
    from abcrnn.sampling import SampleConfig, generate_tunes

    model, vocab, _ = load_for_sampling(run_dir)
    converted: list[str] = []
    for batch in range(MAX_BATCHES):
        settings = SampleConfig(
            num_tunes=args.num_tunes,
            temperature=args.temperature,
            max_length=DEMO_MAX_LENGTH,
            seed=args.seed + batch,
        )
        generated = generate_tunes(model, vocab, settings)
        converted += [tune for tune in generated.tunes if _converts(tune)]
        if len(converted) >= args.num_tunes:
            break
    converted = converted[: args.num_tunes]

    write_tunes(converted, tunes_dir)
    report = render_tunes(converted, tunes_dir)
    write_index_html(report, tunes_dir, title=f"Tunes composed by {run_dir.name}")
    return report


def _converts(tune: str) -> bool:
    """Return whether abc2midi turns `tune` into a MIDI file with notes."""
    import tempfile

    from abcrnn.abc.midi import abc_to_midi

    with tempfile.TemporaryDirectory() as folder:
        return abc_to_midi(tune, Path(folder) / "tune.mid").ok


def _print_summary(run_dir: Path, result, report) -> None:
    """Print where everything is and the validation bits per character reached."""
    print()
    print(f"run folder:   {run_dir}")
    print(f"loss plot:    {run_dir / 'loss.png'}")
    print(f"metrics:      {run_dir / 'metrics.csv'}")
    print(f"checkpoint:   {run_dir / 'checkpoints' / 'best.pt'}")
    ok = len(report.tunes) - report.failed
    print(f"tunes:        {ok} rendered to ABC, MIDI and WAV in {report.out_dir}")
    print(f"audio:        {', '.join(report.backends) or 'none'}")
    print(f"listen:       {report.out_dir / 'index.html'}")
    if result.best_val_loss is not None:
        bits = result.best_val_loss / math.log(2)
        print(f"validation:   {result.best_val_loss:.3f} nats = {bits:.3f} bits/char")
