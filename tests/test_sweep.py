"""`abcrnn sweep`: the study design, a tiny grid end to end, and kill-and-resume."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from abcrnn.cli import main
from abcrnn.errors import ConfigError
from abcrnn.sweep import (
    Budget,
    Factor,
    StudySpec,
    base_values,
    design_values,
    load_spec,
    parse_factor,
    parse_setting,
    run_config,
    run_name,
    save_spec,
)
from abcrnn.sweep_analysis import rank_correlation
from abcrnn.sweep_runner import STUDY_NAME, storage_url
from abcrnn.tracking import read_metrics
from ml_support import write_corpus

optuna = pytest.importorskip("optuna", reason="the study extra is not installed")

# Base settings for tiny runs: an 8-dimensional embedding, no warm-up, short
# sampled tunes and no per-run TensorBoard files, so a run takes about a second.
TINY_SETTINGS = [
    "embedding_dim=8", "batch_size=4", "valid_fraction=0.125", "eval_batches=2",
    "warmup_steps=0", "checkpoint_every=5", "sample_max_length=60",
    "tensorboard=false", "device=cpu", "bf16=off",
]  # fmt: skip


def sweep_args(study_dir, corpus, factors, steps, mode="grid", jobs=1):
    args = ["sweep", "--study-dir", str(study_dir), "--corpus", str(corpus)]
    for setting in TINY_SETTINGS:
        args += ["--set", setting]
    for factor in factors:
        args += ["--factor", factor]
    args += ["--mode", mode, "--budget-steps", str(steps), "--evals", "3"]
    args += ["--jobs", str(jobs), "--threads-per-job", "1"]
    return args + ["--num-check-tunes", "2"]


def load_trials(study_dir):
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(study_dir))
    return study.get_trials(deepcopy=False)


def mtimes(folder):
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}


# The design: factors, runs and budgets.


def test_default_study_has_seven_runs():
    names = [run_name(values) for values in design_values(StudySpec())]
    assert names == [
        "hidden_size=256,lr=0.003,seq_len=100",
        "hidden_size=128,lr=0.003,seq_len=100",
        "hidden_size=512,lr=0.003,seq_len=100",
        "hidden_size=256,lr=0.001,seq_len=100",
        "hidden_size=256,lr=0.01,seq_len=100",
        "hidden_size=256,lr=0.003,seq_len=50",
        "hidden_size=256,lr=0.003,seq_len=200",
    ]


def test_base_is_middle_value():
    spec = StudySpec(factors=(Factor("hidden_size", (64, 32, 16, 8)),))
    assert base_values(spec) == {"hidden_size": 16}
    assert len(design_values(spec)) == 4


def test_grid_is_full_product():
    spec = StudySpec(
        factors=(Factor("hidden_size", (16, 32)), Factor("cell", ("lstm", "gru"))),
        mode="grid",
    )
    assert [run_name(values) for values in design_values(spec)] == [
        "hidden_size=16,cell=lstm",
        "hidden_size=16,cell=gru",
        "hidden_size=32,cell=lstm",
        "hidden_size=32,cell=gru",
    ]


def test_parse_factor_list_and_range():
    assert parse_factor("hidden-size=128,256") == Factor("hidden_size", (128, 256))
    assert parse_factor("lr=1e-4:1e-2:log") == Factor("lr", (), 1e-4, 1e-2, True)
    assert parse_factor("cell=gru,lstm,gru") == Factor("cell", ("gru", "lstm"))
    assert parse_setting("tensorboard=false") == ("tensorboard", False)


@pytest.mark.parametrize(
    "text",
    ["hidden_size", "colour=1,2", "hidden_size=big", "lr=1:2:3", "steps=10,20"],
)
def test_parse_factor_rejects(text):
    with pytest.raises(ConfigError):
        StudySpec(factors=(parse_factor(text),))


def test_range_needs_search_mode():
    factor = Factor("lr", (), 1e-4, 1e-2, True)
    with pytest.raises(ConfigError, match="random and tpe"):
        StudySpec(factors=(factor,))
    assert StudySpec(factors=(factor,), mode="tpe").searches


def test_chars_budget_sets_steps():
    spec = StudySpec(budget=Budget("chars", 320_000))
    values = {"hidden_size": 256, "lr": 0.003, "seq_len": 50}
    config = run_config(
        spec, values, spec.budget.steps_for(run_config(spec, values, 1))
    )
    assert config.batch_size == 32
    assert config.steps == 200  # 320,000 / (32 windows * 50 characters)
    assert config.eval_every == 10  # 20 validations
    assert config.sample_every == config.eval_every


def test_lr_factor_keeps_min_lr_ratio():
    spec = StudySpec()
    base = spec.base_config()
    config = run_config(spec, {"lr": base.lr / 2}, 100)
    assert config.min_lr == pytest.approx(base.min_lr / 2)


def test_spec_round_trip(tmp_path):
    spec = StudySpec(
        base=(("corpus", ("a.abc", "b.abc")), ("dropout", 0.1)),
        factors=(Factor("lr", (), 1e-4, 1e-2, True), Factor("cell", ("lstm", "gru"))),
        mode="random",
        budget=Budget("seconds", 30),
    )
    save_spec(tmp_path, spec)
    assert load_spec(tmp_path) == spec


def test_rank_correlation():
    assert rank_correlation([(1, 3), (2, 2), (3, 1)]) == pytest.approx(-1.0)
    assert rank_correlation([(1, 1), (2, 2)]) is None


# A tiny grid, end to end, and a restart that has nothing left to do.


@pytest.fixture(scope="module")
def grid_study(tmp_path_factory):
    """Run a 2x2 grid in two worker processes; return the study folder and argv."""
    folder = tmp_path_factory.mktemp("grid")
    corpus = write_corpus(folder)
    study_dir = folder / "study"
    factors = ["hidden_size=8,16", "lr=0.01,0.03"]
    argv = sweep_args(study_dir, corpus, factors, steps=6, jobs=2)
    assert main(argv) == 0
    return study_dir, argv


GRID_RUNS = [
    "hidden_size=8,lr=0.01",
    "hidden_size=8,lr=0.03",
    "hidden_size=16,lr=0.01",
    "hidden_size=16,lr=0.03",
]
PLOTS = [
    "curves-hidden_size.png",
    "effects-hidden_size.png",
    "curves-lr.png",
    "effects-lr.png",
]


def test_grid_trains_every_run(grid_study):
    study_dir, _ = grid_study
    trials = load_trials(study_dir)
    assert sorted(t.user_attrs["run"] for t in trials) == sorted(GRID_RUNS)
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    for name in GRID_RUNS:
        summary = json.loads((study_dir / "runs" / name / "summary.json").read_text())
        assert summary["status"] == "finished"
        assert summary["steps"] == 6
        assert summary["chars_seen"] == 6 * 4 * 160  # steps * batch * seq_len
        assert summary["check_tunes"] == 2
        assert 0.0 <= summary["valid_tune_share"] <= 1.0
        assert summary["best_val_bpc"] == min(bpc for _, bpc in summary["curve"])
        assert (study_dir / "runs" / name / "sample" / "sample-01.abc").is_file()


def test_grid_trial_values(grid_study):
    study_dir, _ = grid_study
    for trial in load_trials(study_dir):
        name = trial.user_attrs["run"]
        summary = json.loads((study_dir / "runs" / name / "summary.json").read_text())
        assert trial.value == pytest.approx(summary["best_val_bpc"])
        assert run_name(trial.params) == name


def test_report_holds_every_run_and_plot(grid_study):
    study_dir, _ = grid_study
    report = study_dir / "report"
    markdown = (report / "report.md").read_text()
    page = (report / "report.html").read_text()
    for name in GRID_RUNS:
        assert f"### {GRID_RUNS.index(name) + 1}. {name}" in markdown
        assert name in page
    for plot in PLOTS:
        assert (report / plot).stat().st_size > 1000
        assert f"]({plot})" in markdown
        assert f'alt="{plot[:-4]}"' in page
    assert page.count("data:image/png;base64,") == len(PLOTS)
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + len(GRID_RUNS)  # header, rule, one row per run
    assert "## Analysis" in markdown
    assert "The best run is" in markdown


def test_hparams_written_per_run(grid_study):
    study_dir, _ = grid_study
    for name in GRID_RUNS:
        assert list((study_dir / "tb" / name).glob("events.out.tfevents.*"))


def test_rerun_of_done_study_trains_nothing(grid_study):
    study_dir, _ = grid_study
    before = {name: mtimes(study_dir / "runs" / name) for name in GRID_RUNS}
    assert main(["sweep", "--study-dir", str(study_dir)]) == 0
    assert len(load_trials(study_dir)) == len(GRID_RUNS)
    for name in GRID_RUNS:
        assert mtimes(study_dir / "runs" / name) == before[name]


def test_other_design_in_same_folder_rejected(grid_study, capsys):
    study_dir, argv = grid_study
    changed = [a.replace("lr=0.01,0.03", "lr=0.01,0.1") for a in argv]
    assert main(changed) == 2
    assert "another design" in capsys.readouterr().err


def test_report_only_needs_study(tmp_path, capsys):
    assert main(["sweep", "--study-dir", str(tmp_path), "--report-only"]) == 2
    assert "study.json is missing" in capsys.readouterr().err


def test_random_search_stays_in_ranges(tmp_path):
    corpus = write_corpus(tmp_path)
    study_dir = tmp_path / "study"
    factors = ["hidden_size=8:16", "lr=0.001:0.1:log"]
    argv = sweep_args(study_dir, corpus, factors, steps=4, mode="random")
    assert main(argv + ["--trials", "3"]) == 0
    trials = load_trials(study_dir)
    assert len(trials) == 3
    for trial in trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert 8 <= trial.params["hidden_size"] <= 16
        assert 0.001 <= trial.params["lr"] <= 0.1
    markdown = (study_dir / "report" / "report.md").read_text()
    assert "**lr** over 3 runs" in markdown


# Kill and resume: SIGKILL while the second run trains, then start again.


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the study did not reach the expected point")
        time.sleep(0.05)


def has_data_rows(path):
    return path.is_file() and len(path.read_text().splitlines()) >= 3


def test_killed_study_continues(tmp_path, caplog):
    corpus = write_corpus(tmp_path)
    study_dir = tmp_path / "study"
    factors = ["hidden_size=8,16,24"]  # ofat: 3 runs, hidden_size=16 first
    argv = sweep_args(study_dir, corpus, factors, steps=50, mode="ofat")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    process = subprocess.Popen(
        [sys.executable, "-m", "abcrnn", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = study_dir / "runs"
    try:
        wait_for(lambda: (runs / "hidden_size=16" / "summary.json").is_file())
        second = runs / "hidden_size=8"
        wait_for(lambda: (second / "checkpoints" / "last.pt").is_file())
        first_files = mtimes(runs / "hidden_size=16")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (second / "summary.json").exists()
    killed = [t for t in load_trials(study_dir) if t.user_attrs["run"] == second.name]
    assert [t.state for t in killed] == [optuna.trial.TrialState.RUNNING]

    caplog.set_level("INFO", logger="abcrnn.sweep_runner")
    assert main(["sweep", "--study-dir", str(study_dir)]) == 0
    assert "resuming hidden_size=8" in caplog.messages
    trials = load_trials(study_dir)
    by_run = {}
    for trial in trials:
        by_run.setdefault(trial.user_attrs["run"], []).append(trial.state)
    complete, fail = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    assert by_run == {
        "hidden_size=16": [complete],
        "hidden_size=8": [fail, complete],
        "hidden_size=24": [complete],
    }
    assert mtimes(runs / "hidden_size=16") == first_files
    steps = [int(row["step"]) for row in read_metrics(second / "metrics.csv")]
    assert steps == sorted(set(steps))
    assert steps[-1] == 50
    for name in by_run:
        assert json.loads((runs / name / "summary.json").read_text())["steps"] == 50


def test_spec_budget_change_is_new_design():
    spec = StudySpec()
    changed = dataclasses.replace(spec, budget=Budget("chars", 1e6))
    assert spec.to_dict() != changed.to_dict()
