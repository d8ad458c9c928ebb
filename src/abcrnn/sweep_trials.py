"""Bookkeeping of a study's trials: which runs are done, and which must run again.

A run is named by its factor values (see `sweep.run_name`); several trials may
land on one run, e.g. a trial killed mid-run and the trial that finishes it.
A run is done when one of its trials completed, was pruned or diverged (a FAIL
with an "error" user attribute). Other failed trials leave the run to do again:
those killed or interrupted, and those that landed on a run that another process
was training.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from abcrnn.sweep import RUNS_FOLDER, StudySpec, design_values, run_name

log = logging.getLogger(__name__)

LOCK_FILE = ".sweep.lock"


def _params(spec: StudySpec, values: dict[str, Any]) -> dict[str, Any]:
    """Return the Optuna parameters of a run with these factor values."""
    return {"run": run_name(values)} if spec.mode == "ofat" else dict(values)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[bool]:
    """Hold an exclusive lock on run_dir; yield False when another process has it.

    The lock is an flock on run_dir/.sweep.lock, so the system releases it when
    the holding process dies, even by SIGKILL.
    NOTE: flock works between processes of one machine; on network file systems
    it may not exclude processes of other machines.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _params_name(params: dict[str, Any], spec: StudySpec) -> str:
    """Return the run name of a trial's Optuna parameters."""
    if "run" in params:
        return params["run"]
    ordered = {f.name: params[f.name] for f in spec.factors if f.name in params}
    return run_name(ordered)


def _trial_name(trial, spec: StudySpec) -> str:
    return trial.user_attrs.get("run") or _params_name(trial.params, spec)


def _counts_as_done(trial) -> bool:
    """Return True when the trial leaves its run done: finished, pruned or diverged."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def _names(trials, spec: StudySpec, states=None, done=False) -> set[str]:
    return {
        _trial_name(t, spec)
        for t in trials
        if (states is None or t.state in states) and (not done or _counts_as_done(t))
    }


def nothing_to_start(study, spec: StudySpec) -> bool:
    """Return True when a worker should stop asking for trials.

    That is when no trial waits and, for random and tpe, the done and running
    trials reach spec.trials. An ofat or grid study stops when its queue is
    empty, because `prepare_trials` enqueued every run that was not done: a run
    whose trial fails from now on waits for the next start of the study.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    if not spec.searches:
        return True
    # NOTE: workers that check at the same moment may each start one more trial,
    # so a random or tpe study can end with a few trials more than spec.trials.
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return sum(map(_counts_as_done, trials)) + running >= spec.trials


def study_done(study, spec: StudySpec) -> bool:
    """Return True when every run of the study is done."""
    trials = study.get_trials(deepcopy=False)
    if spec.searches:
        return sum(map(_counts_as_done, trials)) >= spec.trials
    done = _names(trials, spec, done=True)
    return all(run_name(values) in done for values in design_values(spec))


def prepare_trials(study, spec: StudySpec, study_dir: Path, url: str) -> int:
    """Fail the killed trials of this machine and enqueue what must still run.

    For ofat and grid, every run with no done, running or waiting trial is
    enqueued; for random and tpe, the runs of failed trials are. Returns the
    number of trials enqueued.
    """
    from optuna.trial import TrialState

    _fail_killed_trials(study, Path(study_dir) / RUNS_FOLDER, url)
    trials = study.get_trials(deepcopy=False)
    covered = _names(trials, spec, done=True)
    covered |= _names(trials, spec, (TrialState.RUNNING, TrialState.WAITING))
    if spec.searches:
        failed = [t for t in trials if t.state == TrialState.FAIL and t.params]
        todo = [(t.params, t.number) for t in failed if not _counts_as_done(t)]
    else:
        todo = [(_params(spec, values), None) for values in design_values(spec)]
    enqueued = 0
    for params, retry_of in todo:
        name = _params_name(params, spec)
        if name in covered:
            continue
        attrs = {"run": name} | ({"retry_of": retry_of} if retry_of is not None else {})
        study.enqueue_trial(params, user_attrs=attrs)
        covered.add(name)
        enqueued += 1
    return enqueued


def _fail_killed_trials(study, runs_dir: Path, url: str) -> None:
    """Mark FAIL the RUNNING trials of this machine whose run folder is unlocked."""
    import optuna
    from optuna.trial import TrialState

    # A plain sampler: GridSampler.after_trial may stop the study, which only
    # works inside optimize.
    plain = optuna.load_study(
        study_name=study.study_name,
        storage=url,
        sampler=optuna.samplers.RandomSampler(),
    )
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("host") != host:
            continue
        name = trial.user_attrs.get("run")
        if name is not None:
            with run_lock(runs_dir / name) as locked:
                if not locked:
                    continue  # a live process on this machine trains it
        plain.tell(trial.number, state=TrialState.FAIL)
        log.info("trial %d (%s) was killed; its run will continue", trial.number, name)


def retry_stale_trial(study, trial, spec: StudySpec) -> None:
    """Enqueue again the run of a trial that Optuna's heartbeat found stale."""
    from optuna.trial import TrialState

    if not trial.params:
        return
    trials = study.get_trials(deepcopy=False)
    covered = _names(trials, spec, done=True)
    covered |= _names(trials, spec, (TrialState.RUNNING, TrialState.WAITING))
    name = _trial_name(trial, spec)
    if name not in covered:
        study.enqueue_trial(
            trial.params, user_attrs={"run": name, "retry_of": trial.number}
        )
