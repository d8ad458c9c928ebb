"""`abcrnn train`: train a model from a preset plus flags, or resume a run."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from abcrnn.config import (
    BF16_MODES,
    CELLS,
    DEVICES,
    LR_SCHEDULES,
    OPTIMIZERS,
    PRESETS,
    TRACKERS,
    TrainConfig,
    flag_name,
)
from abcrnn.errors import ConfigError

# Help for each TrainConfig field; the preset values are appended to each line.
FIELD_HELP = {
    "corpus": "ABC sources: .abc files, folders or music21 collection names",
    "normalise": "clean tunes: drop comments and non-musical header fields",
    "drop_titles": "remove T: title lines",
    "drop_chords": "remove chord symbols and annotations in double quotes",
    "drop_decorations": "remove decorations such as !trill! and ~",
    "deduplicate": "keep one copy of tunes that differ only in the X: line",
    "valid_fraction": "share of tunes held out for validation, 0 = none",
    "embedding_dim": "size of the character embedding",
    "hidden_size": "units per recurrent layer",
    "num_layers": "number of stacked recurrent layers",
    "dropout": "dropout probability between layers and before the output layer",
    "cell": "recurrent cell type",
    "optimizer": "optimizer (sgd uses momentum 0.9)",
    "lr": "peak learning rate",
    "lr_schedule": "learning-rate decay after warm-up",
    "warmup_steps": "steps of linear learning-rate warm-up",
    "min_lr": "learning rate reached at the last step by cosine or linear decay",
    "weight_decay": "weight decay (L2 for adam, decoupled for adamw)",
    "grad_clip": "maximum gradient L2 norm, 0 = no clipping",
    "steps": "total optimizer steps of the run",
    "batch_size": "windows per batch",
    "seq_len": "characters per training window",
    "seed": "random seed for weights, batches and dropout",
    "device": "device to train on; auto prefers cuda, then mps, then cpu",
    "bf16": "bfloat16 autocast; auto uses it on CUDA and on CPUs with AVX-512 BF16/AMX",
    "threads": "CPU threads for PyTorch, 0 = PyTorch's default",
    "eval_every": "steps between validations, 0 = only at the end",
    "eval_batches": "validation batches per evaluation",
    "sample_every": "steps between sampled tunes (samples/step-N.abc), 0 = never",
    "sample_tunes": "tunes sampled each time",
    "sample_max_length": "maximum new characters per sampled tune",
    "sample_temperature": "sampling temperature during training, 0 = greedy",
    "sample_audio": "also render sampled tunes to MIDI and WAV (needs abc2midi)",
    "log_every": "steps between log lines and metrics.csv rows",
    "checkpoint_every": "steps between saves of checkpoints/last.pt, 0 = at the end",
    "tensorboard": "write TensorBoard event files to RUN_DIR/tb",
    "tracker": "extra experiment tracker; comet needs comet_ml",
}
CHOICES = {
    "cell": CELLS,
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
    "device": DEVICES,
    "bf16": BF16_MODES,
    "tracker": TRACKERS,
}
# Settings a resumed run may change; the others must match the saved run.
RESUME_OVERRIDES = {
    "steps",
    "device",
    "bf16",
    "threads",
    "eval_every",
    "sample_every",
    "sample_tunes",
    "sample_max_length",
    "sample_temperature",
    "sample_audio",
    "log_every",
    "checkpoint_every",
    "tensorboard",
    "tracker",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `train` subcommand with one flag per TrainConfig field."""
    parser = subparsers.add_parser(
        "train",
        help="train a model on ABC tunes",
        description="Train a character-level recurrent network on ABC tunes. Start "
        "from a preset and change any setting with its flag; the resolved settings "
        "are printed once and saved in RUN_DIR/config.json.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="starting settings: lab = the lab's exact settings, default = tuned to "
        "train on 2 CPU cores in a few minutes (default: default)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for checkpoints, metrics and samples "
        "(default: runs/<preset>-<date>-<time>)",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from checkpoints/last.pt with its saved "
        "settings; only --steps and run-control flags may change (default: off)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bar (default: shown on a terminal)",
    )
    group = parser.add_argument_group("settings (default: the preset's value)")
    for field in dataclasses.fields(TrainConfig):
        _add_field_flag(group, field)
    parser.set_defaults(func=run)
    return parser


def _add_field_flag(group: argparse._ArgumentGroup, field: dataclasses.Field) -> None:
    name = field.name
    presets = ", ".join(
        f"{preset} {_show(getattr(config, name))}" for preset, config in PRESETS.items()
    )
    options: dict[str, Any] = {
        "dest": name,
        "default": None,
        "help": f"{FIELD_HELP[name]} (presets: {presets})",
    }
    if field.type == "bool":
        options["action"] = argparse.BooleanOptionalAction
    elif field.type == "tuple[str, ...]":
        options.update(nargs="+", metavar="SOURCE")
    elif field.type in ("int", "float"):
        options.update(type=int if field.type == "int" else float, metavar="N")
    elif name in CHOICES:
        options["choices"] = CHOICES[name]
    group.add_argument(f"--{flag_name(name)}", **options)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(value)
    return str(value)


def resolve_args(args: argparse.Namespace) -> tuple[TrainConfig, Path, bool]:
    """Return (config, run_dir, resume) from parsed arguments."""
    overrides = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(TrainConfig)
        if getattr(args, field.name) is not None
    }
    if args.resume is None:
        preset = args.preset or "default"
        config = dataclasses.replace(PRESETS[preset], **overrides)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = args.run_dir or Path("runs") / f"{preset}-{stamp}"
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"--run-dir {run_dir} is a file; pass a folder")
        return config, run_dir, False

    if args.preset is not None:
        raise ConfigError(
            "--preset does not apply with --resume: the run keeps its saved settings"
        )
    if args.run_dir is not None and args.run_dir.resolve() != args.resume.resolve():
        raise ConfigError(
            f"--run-dir {args.run_dir} differs from --resume {args.resume}; "
            "a resumed run stays in its folder, so drop --run-dir"
        )
    return _resumed_config(args.resume, overrides), args.resume, True


def _resumed_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    from abcrnn.checkpoint import load_checkpoint
    from abcrnn.errors import CheckpointError

    path = run_dir / "checkpoints" / "last.pt"
    if run_dir.is_dir() and not path.exists():
        raise CheckpointError(
            f"nothing to resume in {run_dir}: {path} does not exist, because the run "
            "stopped before its first checkpoint or is not an abcrnn run; start it "
            "again without --resume"
        )
    saved = load_checkpoint(path).get("train_config")
    if not saved:
        raise CheckpointError(
            f"{path} has no training settings, so the run cannot be resumed; "
            "start a new run"
        )
    try:
        config = TrainConfig.from_dict(saved)
    except (TypeError, ConfigError) as error:
        raise CheckpointError(
            f"{path} has invalid training settings ({error}), so the run cannot "
            "be resumed; start a new run"
        ) from error
    fixed = sorted(
        name
        for name, value in overrides.items()
        if name not in RESUME_OVERRIDES and value != getattr(config, name)
    )
    if fixed:
        listed = ", ".join(f"--{flag_name(name)}" for name in fixed)
        raise ConfigError(
            f"{listed} cannot change when resuming (the run was saved with "
            + ", ".join(f"{name}={_show(getattr(config, name))}" for name in fixed)
            + "); drop the flag or start a new run"
        )
    return dataclasses.replace(config, **overrides)


def format_config(config: TrainConfig) -> str:
    """Return the settings as aligned `name = value` lines."""
    width = max(len(field.name) for field in dataclasses.fields(config))
    return "\n".join(
        f"  {field.name:<{width}} = {_show(getattr(config, field.name))}"
        for field in dataclasses.fields(config)
    )


def run(args: argparse.Namespace) -> int:
    """Train, print the outcome and return 0 (also when stopped by a signal).

    Under torchrun, only rank 0 prints; the other ranks log errors only.
    """
    import logging
    import sys

    from tqdm.contrib.logging import logging_redirect_tqdm

    # Settings first, so that a bad flag fails before PyTorch takes seconds to load.
    config, run_dir, resume = resolve_args(args)

    from abcrnn.distributed import launch_rank
    from abcrnn.training import train
    from abcrnn.training_samples import sample_callback

    if launch_rank() > 0:
        logging.getLogger("abcrnn").setLevel(logging.ERROR)
        train(config, run_dir, resume)
        return 0
    verb = "resuming" if resume else "training"
    print(f"{verb} in {run_dir} with these settings:\n{format_config(config)}")
    callbacks = [sample_callback(run_dir, config)] if config.sample_every else []
    progress = not args.no_progress and sys.stderr.isatty()
    with logging_redirect_tqdm():
        result = train(config, run_dir, resume, callbacks, progress)

    best = result.best_val_loss
    score = "no validation" if best is None else _format_loss(best)
    if result.status == "nothing to do":
        print(
            f"nothing to do: {run_dir} is already at step {result.step}; "
            "raise --steps to train longer"
        )
    elif result.status == "interrupted":
        print(f"stopped at step {result.step} of {config.steps} ({score})")
        print(f"resume with: abcrnn train --resume {run_dir}")
    else:
        print(f"finished {result.step} steps in {result.seconds:.0f} s ({score})")
        print(f"generate with: abcrnn generate {run_dir}")
    return 0


def _format_loss(loss: float) -> str:
    import math

    return f"best validation loss {loss:.4f} nats, {loss / math.log(2):.4f} bits/char"
