"""`abcrnn sweep`: a hyperparameter study with Optuna, and its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from abcrnn.config import PRESETS
from abcrnn.errors import ConfigError
from abcrnn.sweep import MODES, StudySpec

DEFAULTS = StudySpec()
DEFAULT_FACTOR_TEXT = " ".join(
    f"{factor.name}={','.join(f'{value:g}' for value in factor.values)}"
    for factor in DEFAULTS.factors
)
# Flags that change which runs the study makes; None means "not given".
DESIGN_FLAGS = ("preset", "set", "corpus", "factor", "mode", "trials", "seed")
DESIGN_FLAGS += ("evals", "num_check_tunes", "budget_steps", "budget_chars")
DESIGN_FLAGS += ("budget_seconds",)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand."""
    parser = subparsers.add_parser(
        "sweep",
        help="run a hyperparameter study and write its report",
        description="Train one run per setting of the factors, each with the same "
        "budget, score it (validation bits/char, characters/s, share of sampled "
        "tunes the checker accepts) and write STUDY_DIR/report/report.md and "
        "report.html. The study is stored in STUDY_DIR/optuna.db: run the same "
        "command again after a stop or a kill and it finishes the remaining runs "
        "without training the finished ones again.",
    )
    parser.add_argument(
        "--study-dir",
        type=Path,
        default=Path("runs/study"),
        metavar="DIR",
        help="folder of the study, its runs and its report (default: %(default)s)",
    )
    _add_design_flags(parser)
    _add_worker_flags(parser)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the runs done so far, train nothing (default: off)",
    )
    parser.set_defaults(func=run)
    return parser


def _add_design_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "design (default: the values saved in STUDY_DIR/study.json, else these)"
    )
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help=f"base settings of every run (default: {DEFAULTS.preset})",
    )
    group.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="change a base setting for every run, e.g. --set dropout=0.1; "
        "repeatable (default: none)",
    )
    group.add_argument(
        "--corpus",
        nargs="+",
        metavar="SOURCE",
        help="ABC sources of every run (default: the preset's)",
    )
    group.add_argument(
        "--factor",
        action="append",
        metavar="SPEC",
        help="a varied setting: NAME=V1,V2,... (a list; for ofat the middle value "
        "is the base) or NAME=LOW:HIGH[:log] (a range, random and tpe only); "
        f"repeatable (default: {DEFAULT_FACTOR_TEXT})",
    )
    group.add_argument(
        "--mode",
        choices=MODES,
        help="ofat = one factor at a time around the base, grid = every "
        "combination, random or tpe = --trials runs drawn by Optuna "
        f"(default: {DEFAULTS.mode})",
    )
    _add_run_flags(group)


def _add_run_flags(group: argparse._ArgumentGroup) -> None:
    """Add the flags for each run's budget and scoring, and the trial count."""
    budget = group.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-steps",
        type=int,
        metavar="N",
        help="optimizer steps per run (default: off, --budget-chars is used)",
    )
    budget.add_argument(
        "--budget-chars",
        type=float,
        metavar="N",
        help="training characters per run, the fairest budget across seq_len and "
        f"batch_size (default: {DEFAULTS.budget.amount:,.0f})",
    )
    budget.add_argument(
        "--budget-seconds",
        type=float,
        metavar="S",
        help="seconds of training per run, turned into steps by timing 20 steps "
        "(default: off)",
    )
    group.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help=f"runs of a random or tpe study (default: {DEFAULTS.trials})",
    )
    group.add_argument(
        "--seed", type=int, metavar="N", help=f"sampler seed (default: {DEFAULTS.seed})"
    )
    group.add_argument(
        "--evals",
        type=int,
        metavar="N",
        help=f"validations per run, evenly spaced (default: {DEFAULTS.evals})",
    )
    group.add_argument(
        "--num-check-tunes",
        type=int,
        metavar="N",
        help="tunes sampled from each run's best checkpoint for the checker "
        f"(default: {DEFAULTS.num_check_tunes})",
    )


def _add_worker_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workers (may change between restarts)")
    group.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="runs trained at the same time, one process each (default: %(default)s)",
    )
    group.add_argument(
        "--threads-per-job",
        type=int,
        default=0,
        metavar="N",
        help="CPU threads of each job, 0 = CPU count / jobs (default: %(default)s)",
    )
    group.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL shared by workers on several machines, e.g. "
        "postgresql://host/db (default: sqlite in STUDY_DIR/optuna.db)",
    )


def resolve_spec(args: argparse.Namespace, saved: StudySpec | None) -> StudySpec:
    """Return the study's spec: the saved one, or one built from the flags.

    Raises ConfigError when flags ask for a design other than the saved one.
    """
    import dataclasses

    from abcrnn.sweep import parse_factor, parse_setting, same_design

    design_given = any(getattr(args, name) is not None for name in DESIGN_FLAGS)
    if saved is not None and not design_given:
        return saved
    base = dict(parse_setting(text) for text in args.set or ())
    if args.corpus:
        # Paths become absolute, so the study can continue from another folder.
        base["corpus"] = tuple(
            str(Path(source).resolve()) if Path(source).exists() else source
            for source in args.corpus
        )
    changes = {
        "preset": args.preset,
        "base": tuple(base.items()),
        "factors": tuple(parse_factor(text) for text in args.factor or ()) or None,
        "mode": args.mode,
        "budget": _budget(args),
        "trials": args.trials,
        "seed": args.seed,
        "evals": args.evals,
        "num_check_tunes": args.num_check_tunes,
    }
    spec = dataclasses.replace(
        DEFAULTS,
        **{name: value for name, value in changes.items() if value is not None},
    )
    if saved is not None and not same_design(saved, spec):
        raise ConfigError(
            f"{args.study_dir} contains a study with another design; run the "
            "command without design flags to continue it, or pick a new --study-dir"
        )
    return spec


def _budget(args: argparse.Namespace):
    from abcrnn.sweep import Budget

    for kind in ("steps", "chars", "seconds"):
        amount = getattr(args, f"budget_{kind}")
        if amount is not None:
            return Budget(kind, amount)
    return None


def run(args: argparse.Namespace) -> int:
    """Run or continue the study, then write its report; return 0."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError(
            "abcrnn sweep needs Optuna: pip install 'abcrnn[study]' (or optuna)"
        ) from None
    from abcrnn.sweep import load_spec, save_spec
    from abcrnn.sweep_report import write_report
    from abcrnn.sweep_runner import WorkerOptions, run_study

    study_dir: Path = args.study_dir
    saved = load_spec(study_dir)
    spec = resolve_spec(args, saved)
    if args.jobs < 1 or args.threads_per_job < 0:
        raise ConfigError("--jobs must be >= 1 and --threads-per-job >= 0")
    if args.report_only:
        if saved is None:
            raise ConfigError(f"no study in {study_dir}: study.json is missing")
    else:
        study_dir.mkdir(parents=True, exist_ok=True)
        save_spec(study_dir, spec)
        options = WorkerOptions(args.jobs, args.threads_per_job, args.storage)
        print(f"study in {study_dir}: {spec.mode}, {spec.budget.describe()} per run")
        done = run_study(study_dir, spec, options)
        if not done:
            print("some runs are not done; run the same command again to continue")
    report = write_report(study_dir, spec)
    print(f"report: {report.markdown} and {report.html}")
    return 0
