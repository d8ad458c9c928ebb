"""Training on several processes: two CPU ranks over Gloo, started by torchrun.

Two torchrun launches share the module's fixtures, because each one starts three
Python processes that import torch (about 10 to 25 s on 2 shared cores):

1. `torchrun -m abcrnn train` trains 2 ranks for 5 steps.
2. distributed_worker.py resumes that run on 2 ranks, stops at step 6 after a
   SIGTERM that reaches rank 0 alone, and resumes again up to step 8.

The reference is one process with the doubled batch, fed the windows that the two
ranks draw (seeds seed and seed + 1), concatenated.
"""

import dataclasses
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from abcrnn import cli, run_setup
from abcrnn.batches import RandomWindows
from abcrnn.checkpoint import load_checkpoint
from abcrnn.config import TrainConfig, flag_name
from abcrnn.distributed import (
    Ranks,
    gather_rng_states,
    process_group,
    rank_rng_state,
    rank_seed,
)
from abcrnn.errors import ConfigError
from abcrnn.tracking import read_metrics
from abcrnn.training import train
from ml_support import tiny_config, write_corpus

TESTS = Path(__file__).resolve().parent
WORLD_SIZE = 2
BATCH_SIZE = 2  # per rank
FIRST_STEPS = 5  # the first launch trains this far
STOP_STEP = 6  # the second launch stops here, then resumes
STEPS = 8

# Weights after 5 and 8 Adam steps agree to this absolute tolerance. They are not
# bit-identical: DDP averages two per-rank mean gradients while the reference takes
# one mean over the doubled batch, so float32 sums run in another order. Adam then
# divides by sqrt(v), which magnifies the rounding for small gradients. The largest
# difference measured here was 1.2e-7, after 5 and after 8 steps; with seq_len 24
# and grad_clip 1.0 it was 2.6e-6, hence the margin.
WEIGHT_TOLERANCE = 1e-5


def run_config(corpus: Path, **changes) -> TrainConfig:
    """Return the settings of the 2-rank runs: 8 validation windows, clipping on."""
    settings = {
        "valid_fraction": 0.25,
        "seq_len": 16,
        "batch_size": BATCH_SIZE,
        "steps": FIRST_STEPS,
        "grad_clip": 0.5,
        "eval_every": 0,
        "eval_batches": 4,
        "checkpoint_every": 0,
    }
    return tiny_config(corpus, **(settings | changes))


def config_flags(config: TrainConfig) -> list[str]:
    """Return `abcrnn train` flags that reproduce `config`."""
    flags = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        flag = f"--{flag_name(field.name)}"
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag_name(field.name)}")
        elif isinstance(value, tuple):
            flags += [flag, *value]
        else:
            flags += [flag, str(value)]
    return flags


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(arguments: list[str], cwd: Path) -> str:
    """Run torchrun with 2 CPU ranks on 127.0.0.1 and return its output.

    Fails the test when torchrun fails or runs past 240 s. The launch gets its own
    process group, so that a timeout also ends ranks that hang in a collective.
    """
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "GLOO_SOCKET_IFNAME": "lo",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={WORLD_SIZE}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--local-addr=127.0.0.1",
        *arguments,
    ]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun timed out:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


class TwoRankWindows:
    """The windows of two ranks with half the batch each, as one batch."""

    def __init__(self, data: torch.Tensor, seq_len: int, batch_size: int, seed: int):
        self.ranks = [
            RandomWindows(data, seq_len, batch_size // WORLD_SIZE, seed + rank)
            for rank in range(WORLD_SIZE)
        ]
        self.generator = self.ranks[0].generator

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [windows.next_batch() for windows in self.ranks]  # (B/2, T) each
        x = torch.cat([x for x, _ in batches])
        y = torch.cat([y for _, y in batches])
        return x, y

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.ranks[0].state_dict()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def first_launch(corpus, tmp_path_factory) -> dict:
    """Train 2 ranks for 5 steps with `torchrun -m abcrnn train`.

    Returns the run folder, a copy of it at step 5 (for tests that must not see
    the second launch) and the launch's output.
    """
    folder = tmp_path_factory.mktemp("two-ranks")
    run_dir = folder / "run"
    arguments = ["-m", "abcrnn", "train", "--run-dir", str(run_dir), "--no-progress"]
    output = torchrun(arguments + config_flags(run_config(corpus)), folder)
    snapshot = folder / "at-step-5"
    shutil.copytree(run_dir, snapshot)
    return {"run_dir": run_dir, "snapshot": snapshot, "output": output}


@pytest.fixture(scope="module")
def second_launch(first_launch, tmp_path_factory) -> Path:
    """Resume the run on 2 ranks, stop at step 6 by a signal, resume to step 8."""
    out = tmp_path_factory.mktemp("ranks")
    run_dir = first_launch["run_dir"]
    script = TESTS / "distributed_worker.py"
    torchrun([str(script), str(run_dir), str(STOP_STEP), str(STEPS), str(out)], TESTS)
    return out


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict:
    """Train one process with the doubled batch on both ranks' windows to step 8.

    Returns the run folder and the weights after step 5.
    """
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    config = run_config(
        corpus, batch_size=WORLD_SIZE * BATCH_SIZE, steps=STEPS, eval_every=5
    )
    at_step_5 = {}

    def keep_weights(step, model, vocabulary, metrics):
        if step == FIRST_STEPS:
            at_step_5.update({k: v.clone() for k, v in model.state_dict().items()})

    patch = pytest.MonkeyPatch()
    patch.setattr(run_setup, "RandomWindows", TwoRankWindows)
    try:
        config = dataclasses.replace(config, sample_every=FIRST_STEPS)
        train(config, run_dir, callbacks=[keep_weights])
    finally:
        patch.undo()
    return {"run_dir": run_dir, "weights_at_5": at_step_5}


def assert_weights_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(
            actual[name], tensor, atol=WEIGHT_TOLERANCE, rtol=0, msg=name
        )


@pytest.mark.slow
def test_two_ranks_equal_doubled_batch(first_launch, reference):
    saved = load_checkpoint(first_launch["snapshot"] / "checkpoints" / "last.pt")
    assert saved["step"] == FIRST_STEPS
    assert_weights_close(saved["model"], reference["weights_at_5"])


@pytest.mark.slow
def test_training_loss_is_averaged_over_ranks(first_launch, reference):
    two_ranks = read_metrics(first_launch["snapshot"] / "metrics.csv")
    one_process = read_metrics(reference["run_dir"] / "metrics.csv")[:FIRST_STEPS]
    assert [row["step"] for row in two_ranks] == ["1", "2", "3", "4", "5"]
    for actual, expected in zip(two_ranks, one_process, strict=True):
        assert float(actual["train_loss"]) == pytest.approx(
            float(expected["train_loss"]), rel=1e-5
        )


@pytest.mark.slow
def test_validation_is_summed_over_shards(first_launch, reference):
    # 8 validation windows in 4 batches of 2: rank 0 scores batches 0 and 2,
    # rank 1 batches 1 and 3. The reference scores the same 8 windows at once.
    two_ranks = read_metrics(first_launch["snapshot"] / "metrics.csv")[-1]
    one_process = read_metrics(reference["run_dir"] / "metrics.csv")[FIRST_STEPS - 1]
    assert two_ranks["val_loss"] != ""
    assert float(two_ranks["val_loss"]) == pytest.approx(
        float(one_process["val_loss"]), rel=1e-5
    )


@pytest.mark.slow
def test_rank_zero_reports_global_batch(first_launch):
    output = first_launch["output"]
    assert output.count("training in ") == 1
    assert output.count("finished 5 steps") == 1
    assert output.count("batch size 2 per rank, global batch 4 windows") == 1
    config = json.loads((first_launch["snapshot"] / "config.json").read_text())
    assert config["world_size"] == WORLD_SIZE
    assert config["global_batch_size"] == WORLD_SIZE * BATCH_SIZE


@pytest.mark.slow
def test_checkpoint_holds_every_rank_state(first_launch):
    saved = load_checkpoint(first_launch["snapshot"] / "checkpoints" / "last.pt")
    rng = saved["rng"]
    assert len(rng["ranks"]) == WORLD_SIZE
    assert torch.equal(rng["batches"], rng["ranks"][0]["batches"])
    assert not torch.equal(rng["ranks"][0]["batches"], rng["ranks"][1]["batches"])
    assert not any(name.startswith("module.") for name in saved["model"])


@pytest.mark.slow
def test_signal_on_one_rank_stops_both(second_launch):
    for rank in range(WORLD_SIZE):
        record = json.loads((second_launch / f"rank-{rank}.json").read_text())
        assert record["status"] == "interrupted", rank
        assert record["step"] == STOP_STEP, rank
        assert record["exit_status"] == 0, rank


@pytest.mark.slow
def test_same_world_size_resume_continues_exactly(
    second_launch, first_launch, reference
):
    # The run went 0-5, 5-6 (stopped) and 6-8 in three launches of 2 ranks.
    saved = load_checkpoint(first_launch["run_dir"] / "checkpoints" / "last.pt")
    expected = load_checkpoint(reference["run_dir"] / "checkpoints" / "last.pt")
    assert saved["step"] == STEPS
    assert_weights_close(saved["model"], expected["model"])
    steps = [
        row["step"] for row in read_metrics(first_launch["run_dir"] / "metrics.csv")
    ]
    assert steps == [str(step) for step in range(1, STEPS + 1)]


@pytest.mark.slow
def test_resume_two_ranks_on_one_process(first_launch, tmp_path, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(first_launch["snapshot"], run_dir)
    argv = ["train", "--resume", str(run_dir), "--steps", "7", "--no-progress"]
    with caplog.at_level(logging.WARNING, logger="abcrnn"):
        assert cli.main(argv) == 0
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert saved["step"] == 7
    assert "ranks" not in saved["rng"]
    steps = [row["step"] for row in read_metrics(run_dir / "metrics.csv")]
    assert steps == ["1", "2", "3", "4", "5", "6", "7"]
    assert "written by 2 process(es) and this run has 1" in caplog.text


@pytest.mark.slow
def test_gpu_bench_multi_gpu_quick_on_cpu(tmp_path):
    out = tmp_path / "scaling.json"
    script = TESTS.parent / "benchmarks" / "gpu_bench.py"
    environment = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "GLOO_SOCKET_IFNAME": "lo",
    }
    command = [sys.executable, str(script), "--quick", "--multi-gpu", "--device", "cpu"]
    completed = subprocess.run(
        [*command, "--out", str(out)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["mode"] == "multi_gpu"
    assert results["backend"] == "gloo"
    points = results["points"]
    assert [point["processes"] for point in points] == [1, 2]
    assert [point["global_batch_size"] for point in points] == [4, 8]
    assert points[0]["scaling_efficiency"] == pytest.approx(1.0)
    assert points[1]["scaling_efficiency"] > 0
    assert all(point["chars_per_s"] > 0 for point in points)


# Pure helpers, without processes.


def test_single_process_ranks_do_nothing():
    ranks = Ranks()
    tensor = torch.tensor([1.5])
    assert ranks.is_main
    assert not ranks.distributed
    assert ranks.sum(tensor) is tensor
    assert ranks.any(True) is True
    assert ranks.shard([1, 2, 3]) == [1, 2, 3]
    assert ranks.gather("state") == ["state"]


def test_shard_takes_every_world_size_item():
    items = ["b0", "b1", "b2", "b3", "b4"]
    assert Ranks(rank=0, world_size=2).shard(items) == ["b0", "b2", "b4"]
    assert Ranks(rank=1, world_size=2).shard(items) == ["b1", "b3"]
    assert Ranks(rank=5, world_size=6).shard(items) == []


def test_process_group_without_launcher(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with process_group("cpu") as ranks:
        assert ranks == Ranks()


def test_world_size_without_launcher_is_rejected(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="Start abcrnn with torchrun"):
        with process_group("cpu"):
            pass


def test_rank_seed_adds_rank_and_step():
    assert rank_seed(7, Ranks()) == 7
    assert rank_seed(7, Ranks(rank=3, world_size=4)) == 10
    assert rank_seed(7, Ranks(rank=3, world_size=4), step=100) == 110


def test_rng_states_of_one_process_are_unchanged():
    state = {"batches": torch.tensor([1, 2], dtype=torch.uint8)}
    assert gather_rng_states(state, Ranks()) is state


def test_rank_rng_state_picks_own_or_none(caplog):
    states = [{"batches": "rank 0"}, {"batches": "rank 1"}]
    saved = {"batches": "rank 0", "ranks": states}
    two = [Ranks(rank=rank, world_size=2) for rank in range(2)]
    assert [rank_rng_state(saved, ranks, 5) for ranks in two] == states
    assert caplog.text == ""

    # Three ranks resume a run of two: rank 2 has no saved state.
    three = [Ranks(rank=rank, world_size=3) for rank in range(3)]
    assert [rank_rng_state(saved, ranks, 5) for ranks in three] == [*states, None]
    assert "written by 2 process(es) and this run has 3" in caplog.text


def test_rank_rng_state_of_single_process_checkpoint():
    saved = {"batches": "only"}
    assert rank_rng_state(saved, Ranks(), 3) is saved
    assert rank_rng_state(saved, Ranks(rank=1, world_size=2), 3) is None
    assert rank_rng_state(None, Ranks(rank=1, world_size=2), 3) == {}


def import_scaling():
    """Import benchmarks/scaling.py, whose imports name sibling scripts."""
    folder = str(TESTS.parent / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("scaling")


def test_scaling_process_counts():
    scaling = import_scaling()
    assert scaling.process_counts(1) == [1]
    assert scaling.process_counts(2) == [1, 2]
    assert scaling.process_counts(3) == [1, 2, 3]
    assert scaling.process_counts(6) == [1, 2, 4, 6]
    assert scaling.process_counts(8) == [1, 2, 4, 8]


def test_scaling_efficiency_per_batch_size():
    scaling = import_scaling()
    points = [
        {"processes": 1, "batch_size_per_process": 8, "chars_per_s": 100.0},
        {"processes": 2, "batch_size_per_process": 8, "chars_per_s": 150.0},
        {"processes": 2, "batch_size_per_process": 64, "chars_per_s": 900.0},
    ]
    scaling.add_efficiency(points)
    assert [point["scaling_efficiency"] for point in points] == [1.0, 0.75, None]
