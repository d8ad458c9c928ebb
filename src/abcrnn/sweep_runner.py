"""Run a study with Optuna: trials in worker processes, resumable after a kill.

The study lives in an Optuna RDB storage (study_dir/optuna.db, SQLite, unless
another URL is given) and each run in study_dir/runs/<run name>, named by its
factor values. How a restart avoids work:

- A run folder with summary.json is done: a trial that lands on it returns the
  stored result without training.
- Each training holds an exclusive lock (flock) on its run folder, so two
  processes never train the same run. At start, RUNNING trials of this machine
  whose folder is not locked were killed: they are marked FAIL and their
  values enqueued again, and the new trial resumes from checkpoints/last.pt.
  Trials of other machines rely on Optuna's heartbeat, which fails them after
  GRACE_S seconds of silence and enqueues them in the same way.
- ofat and grid runs are enqueued as fixed trials (`Study.enqueue_trial`), so
  the design picks them, not the sampler. Random and tpe trials come from
  Optuna's samplers. For them a median pruner stops a run whose validation
  bits/char is worse than the median of earlier runs at the same point.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

from abcrnn.config import TrainConfig
from abcrnn.errors import AbcrnnError, TrainingError
from abcrnn.sweep import (
    FIELD_TYPES,
    RUNS_FOLDER,
    StudySpec,
    design_values,
    load_spec,
    run_config,
    run_name,
)
from abcrnn.sweep_scoring import read_summary, score_run, write_summary
from abcrnn.sweep_trials import (
    nothing_to_start,
    prepare_trials,
    retry_stale_trial,
    run_lock,
    study_done,
)

log = logging.getLogger(__name__)

STUDY_NAME = "abcrnn-sweep"
DB_FILE = "optuna.db"
HEARTBEAT_S = 30
GRACE_S = 120
PILOT_STEPS = 20  # steps timed to turn a budget in seconds into steps


class RunBusy(Exception):
    """Another process is training the run this trial landed on."""


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    """Worker settings: processes, CPU threads of each, and the Optuna storage URL."""

    jobs: int = 1
    threads_per_job: int = 0  # 0 = the CPU count divided by jobs
    storage: str | None = None

    def threads(self) -> int:
        """Return the thread count of each worker."""
        if self.threads_per_job > 0:
            return self.threads_per_job
        return max(1, (os.cpu_count() or 1) // self.jobs)


def storage_url(study_dir: Path, storage: str | None = None) -> str:
    """Return the storage URL: `storage`, or SQLite in study_dir/optuna.db."""
    return storage or f"sqlite:///{(Path(study_dir) / DB_FILE).resolve()}"


def open_study(study_dir: Path, spec: StudySpec, storage: str | None = None):
    """Create or load the study in its storage, with the sampler and pruner of spec."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = storage_url(study_dir, storage)
    engine_kwargs = (
        {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    )
    rdb = optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
        heartbeat_stale_trial_callback=lambda study, trial: retry_stale_trial(
            study, trial, spec
        ),
    )
    if url.startswith("sqlite"):
        serialise_sqlite(rdb.engine)
    return optuna.create_study(
        study_name=STUDY_NAME,
        storage=rdb,
        sampler=_sampler(spec, spec.seed),
        pruner=_pruner(spec),
        direction="minimize",
        load_if_exists=True,
    )


def serialise_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins.

    Python's sqlite3 starts a transaction only at the first write, so two workers
    can both read a trial as WAITING and both take it. With BEGIN IMMEDIATE the
    read and the write of Optuna's queue pop happen under one lock. This is the
    SQLAlchemy recipe for serializable SQLite transactions.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, connection_record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened without the listeners


def _sampler(spec: StudySpec, seed: int):
    import optuna

    if spec.mode == "ofat":
        names = [run_name(values) for values in design_values(spec)]
        return optuna.samplers.GridSampler({"run": names}, seed=seed)
    if spec.mode == "grid":
        space = {factor.name: list(factor.values) for factor in spec.factors}
        return optuna.samplers.GridSampler(space, seed=seed)
    if spec.mode == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(spec: StudySpec):
    import optuna

    if not spec.searches:
        return optuna.pruners.NopPruner()  # every run of a design must finish
    return optuna.pruners.MedianPruner(
        n_startup_trials=5, n_warmup_steps=max(1, spec.evals // 4)
    )


def suggest_values(trial, spec: StudySpec) -> dict[str, Any]:
    """Ask the trial for this run's factor values, in factor order."""
    if spec.mode == "ofat":
        designs = {run_name(values): values for values in design_values(spec)}
        return designs[trial.suggest_categorical("run", list(designs))]
    values = {}
    for factor in spec.factors:
        if not factor.is_range:
            value = trial.suggest_categorical(factor.name, list(factor.values))
        elif FIELD_TYPES[factor.name] == "int":
            low, high = int(factor.low), int(factor.high)
            value = trial.suggest_int(factor.name, low, high, log=factor.log)
        else:
            value = trial.suggest_float(
                factor.name, factor.low, factor.high, log=factor.log
            )
        values[factor.name] = value
    return values


class Objective:
    """Train and score the run a trial lands on; return its best validation bits/char.

    Pruned runs raise optuna.TrialPruned. Diverged runs, and runs without a
    validation score, raise TrainingError, which the study records as a failed
    trial that counts as done.
    """

    def __init__(self, study_dir: Path, spec: StudySpec, threads: int) -> None:
        self.runs_dir = Path(study_dir) / RUNS_FOLDER
        self.spec = spec
        self.threads = threads

    def __call__(self, trial) -> float:
        import optuna

        trial.set_user_attr("host", socket.gethostname())
        values = suggest_values(trial, self.spec)
        name = run_name(values)
        trial.set_user_attr("run", name)
        trial.set_user_attr("values", values)
        run_dir = self.runs_dir / name
        with run_lock(run_dir) as locked:
            if not locked:
                trial.set_user_attr("busy", True)
                raise RunBusy(f"another process is training {name}")
            summary = read_summary(run_dir)
            if summary is None:
                summary = self.train_and_score(trial, values, run_dir)
            else:
                trial.set_user_attr("reused", True)

        trial.set_user_attr("status", summary["status"])
        if summary["status"] == "pruned":
            raise optuna.TrialPruned(f"{name} was pruned at step {summary['steps']}")
        error = summary["error"]
        if summary["status"] == "finished" and summary["best_val_bpc"] is None:
            error = f"{name} has no validation score: the corpus has too few tunes"
        if error:
            trial.set_user_attr("error", error)
            raise TrainingError(error)
        return summary["best_val_bpc"]

    def train_and_score(self, trial, values: dict, run_dir: Path) -> dict[str, Any]:
        """Train the run, resuming from last.pt if there is one; write its summary."""
        import optuna

        from abcrnn.training import train

        config = self.config(values, run_dir)
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        status, error = "finished", ""
        log.info("%s %s", "resuming" if resume else "training", run_dir.name)
        reporter = _Reporter(trial, config)
        try:
            result = train(config, run_dir, resume, callbacks=[reporter])
        except optuna.TrialPruned:
            status = "pruned"
        except TrainingError as failure:
            status, error = "diverged", str(failure)
        else:
            if result.status == "interrupted":
                trial.set_user_attr("interrupted", True)
                raise KeyboardInterrupt
        summary = score_run(
            run_dir,
            config,
            values,
            status,
            self.spec.num_check_tunes,
            error,
            reporter.pruned_at,
        )
        write_summary(run_dir, summary)
        return summary

    def config(self, values: dict[str, Any], run_dir: Path) -> TrainConfig:
        """Return the run's settings: those it started with, or new ones."""
        saved = run_dir / "config.json"
        if saved.is_file():
            data = json.loads(saved.read_text(encoding="utf-8"))["train_config"]
            config = TrainConfig.from_dict(data)
            return dataclasses.replace(config, threads=self.threads)
        budget = self.spec.budget
        steps = budget.steps_for(run_config(self.spec, values, 1))
        if steps is None:
            steps = calibrated_steps(
                run_config(self.spec, values, PILOT_STEPS, self.threads),
                budget.amount,
                run_dir / "pilot",
            )
        return run_config(self.spec, values, steps, self.threads)


class _Reporter:
    """Training callback: report each validation bits/char to Optuna, maybe prune.

    The report's step is the validation's index, which falls at the same share of
    the budget for every run, so the pruner compares like with like.
    """

    def __init__(self, trial, config: TrainConfig) -> None:
        self.trial = trial
        self.eval_every = config.eval_every
        # (step, validation bits/char) of the pruning validation, which the
        # training loop does not log because the callback raises before that.
        self.pruned_at: tuple[int, float] | None = None

    def __call__(self, step: int, model, vocab, metrics: dict[str, float]) -> None:
        import optuna

        if "val_bpc" not in metrics:
            return
        self.trial.report(metrics["val_bpc"], step // self.eval_every)
        if self.trial.should_prune():
            self.pruned_at = (step, metrics["val_bpc"])
            raise optuna.TrialPruned(f"pruned at step {step}")


def calibrated_steps(config: TrainConfig, seconds: float, pilot_dir: Path) -> int:
    """Return the steps `config` trains in `seconds`, timed on a short pilot run.

    NOTE: an estimate. The pilot's speed is measured over its last half, and a
    busy machine or a slower validation makes the real run take longer.
    """
    from abcrnn.tracking import read_metrics
    from abcrnn.training import train

    shutil.rmtree(pilot_dir, ignore_errors=True)
    pilot = dataclasses.replace(
        config,
        steps=PILOT_STEPS,
        log_every=PILOT_STEPS // 2,
        eval_every=0,
        eval_batches=1,
        sample_every=0,
        checkpoint_every=0,
        tensorboard=False,
    )
    train(pilot, pilot_dir)
    speed = float(read_metrics(pilot_dir / "metrics.csv")[-1]["tokens_per_s"])
    shutil.rmtree(pilot_dir, ignore_errors=True)
    return max(1, int(seconds * speed / (config.batch_size * config.seq_len)))


def run_worker(study_dir: Path, storage: str | None, worker: int, threads: int) -> None:
    """Run trials until nothing is left to start (the body of one worker process)."""

    spec = load_spec(study_dir)
    study = open_study(study_dir, spec, storage)
    if nothing_to_start(study, spec):
        return
    # Draw new values after a restart: the seed moves on with the trial count.
    seed = spec.seed + 1000 * len(study.get_trials(deepcopy=False)) + worker
    study.sampler = _sampler(spec, seed)

    def stop_when_nothing_left(study, trial) -> None:
        if nothing_to_start(study, spec):
            study.stop()

    study.optimize(
        Objective(study_dir, spec, threads),
        catch=(RunBusy, TrainingError),
        callbacks=[stop_when_nothing_left],
        gc_after_trial=False,
    )


def _worker_main(study_dir: str, storage: str | None, worker: int, threads: int):
    logging.basicConfig(level=logging.INFO, format=f"[worker {worker}] %(message)s")
    try:
        run_worker(Path(study_dir), storage, worker, threads)
    except KeyboardInterrupt:
        sys.exit(130)
    except AbcrnnError as error:
        print(f"worker {worker}: error: {error}", file=sys.stderr)
        sys.exit(2)


def run_study(study_dir: Path, spec: StudySpec, options: WorkerOptions) -> bool:
    """Run the study saved in study_dir until every run is done; return study_done.

    With one job the trials run in this process; otherwise `options.jobs`
    processes share the storage. Raises KeyboardInterrupt after Ctrl-C once the
    workers have stopped, and AbcrnnError when a worker failed.
    """
    url = storage_url(study_dir, options.storage)
    study = open_study(study_dir, spec, options.storage)
    enqueued = prepare_trials(study, spec, study_dir, url)
    log.info("%d run(s) enqueued in %s", enqueued, url)
    if options.jobs == 1:
        run_worker(study_dir, options.storage, 0, options.threads())
        return study_done(study, spec)

    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_worker_main,
            args=(str(study_dir), options.storage, index, options.threads()),
        )
        for index in range(options.jobs)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:
        for worker in workers:
            worker.join()  # each stops after its current step and saves last.pt
        raise
    codes = [worker.exitcode for worker in workers]
    if any(code == 130 for code in codes):
        raise KeyboardInterrupt
    if any(code != 0 for code in codes):
        raise AbcrnnError(
            f"study workers exited with status {codes}; see their messages above, "
            "then run the same command again to continue"
        )
    return study_done(study, spec)
