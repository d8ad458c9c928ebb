"""Training throughput of `abcrnn train` on 1, 2, ... N processes (DDP).

gpu_bench.py --multi-gpu runs this. For each process count n, torchrun starts n
ranks of `python -m abcrnn train`: one per GPU with NCCL, or n CPU processes with
Gloo. n = 1 runs without torchrun, the way one GPU is used. The batch per rank is
fixed, so the global batch grows with n (weak scaling).

Each run logs chars/s (the global batch's characters per second, validation and
saving left out) every `interval_steps` steps. The first interval contains the
warm-up and is dropped, and the median of the others counts. Scaling efficiency
is chars/s at n divided by n times chars/s at 1; 1.0 is perfect scaling.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from measure import hardware_info

from abcrnn.tracking import read_metrics

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ScalingPlan:
    """Model size, batches and run length of each measured run."""

    preset: str = "lab"
    embedding_dim: int = 256
    hidden_size: int = 1024
    batch_sizes: tuple[int, ...] = (8, 128)  # per rank
    seq_len: int = 100
    interval_steps: int = 50
    intervals: int = 4  # the first is warm-up and does not count
    threads_per_process: int = 0  # CPU threads per rank, 0 = PyTorch's default
    timeout_seconds: float = 600.0


# The lab's model on GPUs: its batch of 8 per GPU, and 128 to give each GPU work.
GPU_SCALING_PLAN = ScalingPlan()

# The `default` preset's model, one thread per rank, so that n ranks use n cores.
CPU_SCALING_PLAN = ScalingPlan(
    preset="default",
    embedding_dim=64,
    hidden_size=512,
    batch_sizes=(32,),
    seq_len=160,
    interval_steps=10,
    intervals=4,
    threads_per_process=1,
)

# Seconds per run on a CPU: a tiny model and a few steps.
QUICK_SCALING_PLAN = ScalingPlan(
    preset="default",
    embedding_dim=8,
    hidden_size=16,
    batch_sizes=(4,),
    seq_len=16,
    interval_steps=3,
    intervals=3,
    threads_per_process=1,
    timeout_seconds=300.0,
)


def process_counts(max_processes: int) -> list[int]:
    """Return 1, 2, 4, ... below `max_processes`, then `max_processes` itself."""
    counts = []
    count = 1
    while count < max_processes:
        counts.append(count)
        count *= 2
    return counts + [max_processes]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_command(
    plan: ScalingPlan, corpus: str, device: str, batch_size: int, run_dir: Path
) -> list[str]:
    """Return the `abcrnn train` arguments of one measured run."""
    steps = plan.interval_steps * plan.intervals
    settings = {
        "preset": plan.preset,
        "corpus": corpus,
        "embedding-dim": plan.embedding_dim,
        "hidden-size": plan.hidden_size,
        "batch-size": batch_size,
        "seq-len": plan.seq_len,
        "steps": steps,
        "warmup-steps": 0,
        "device": device,
        "threads": plan.threads_per_process,
        "log-every": plan.interval_steps,
        "eval-every": 0,
        "eval-batches": 1,
        "sample-every": 0,
        "checkpoint-every": 0,
        "run-dir": run_dir,
    }
    arguments = ["-m", "abcrnn", "train", "--no-tensorboard", "--no-progress"]
    for name, value in settings.items():
        arguments += [f"--{name}", str(value)]
    return arguments


def launch(processes: int, arguments: list[str], timeout: float) -> float:
    """Run `arguments` on `processes` ranks and return the wall time in seconds.

    More than one process runs under torchrun. Raises RuntimeError with the end
    of the output when the run fails.
    """
    if processes == 1:
        command = [sys.executable, *arguments]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={processes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}",
            "--local-addr=127.0.0.1",
            *arguments,
        ]
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with status {completed.returncode}:\n"
            f"{(completed.stdout + completed.stderr)[-3000:]}"
        )
    return time.perf_counter() - started


def measure_point(
    plan: ScalingPlan,
    corpus: str,
    device: torch.device,
    processes: int,
    batch_size: int,
    work_dir: Path,
) -> dict[str, Any]:
    """Train on `processes` ranks and return their chars/s, warm-up dropped."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"scaling-{processes}-", dir=work_dir))
    arguments = train_command(plan, corpus, device.type, batch_size, run_dir)
    seconds = launch(processes, arguments, plan.timeout_seconds)
    rows = read_metrics(run_dir / "metrics.csv")
    rates = [float(row["tokens_per_s"]) for row in rows[1:] if row["tokens_per_s"]]
    median = statistics.median(rates)
    return {
        "processes": processes,
        "batch_size_per_process": batch_size,
        "global_batch_size": processes * batch_size,
        "threads_per_process": plan.threads_per_process,
        "chars_per_s": median,
        "chars_per_s_per_process": median / processes,
        "rounds_chars_per_s": rates,
        "launch_wall_seconds": seconds,
    }


def add_efficiency(points: list[dict[str, Any]]) -> None:
    """Set scaling_efficiency on each point against the 1-process point's rate."""
    single = {
        point["batch_size_per_process"]: point["chars_per_s"]
        for point in points
        if point["processes"] == 1
    }
    for point in points:
        base = single.get(point["batch_size_per_process"])
        rate = point["chars_per_s"]
        point["scaling_efficiency"] = (
            rate / (point["processes"] * base) if base else None
        )


def scaling_results(
    plan: ScalingPlan,
    corpus: str,
    device: torch.device,
    max_processes: int,
    quick: bool,
) -> dict[str, Any]:
    """Measure every process count and batch size of `plan`, as a results dict."""
    started = time.perf_counter()
    points = []
    with tempfile.TemporaryDirectory(prefix="abcrnn-scaling-") as folder:
        for batch_size in plan.batch_sizes:
            for processes in process_counts(max_processes):
                point = measure_point(
                    plan, corpus, device, processes, batch_size, Path(folder)
                )
                log.info(
                    "%d process(es), batch %d per process: %.0f chars/s",
                    processes,
                    batch_size,
                    point["chars_per_s"],
                )
                points.append(point)
    add_efficiency(points)
    return {
        "schema_version": SCHEMA_VERSION,
        "script": "gpu_bench",
        "mode": "multi_gpu",
        "quick": quick,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "hardware": hardware_info(device),
        "backend": "nccl" if device.type == "cuda" else "gloo",
        "corpus": corpus,
        "plan": asdict(plan),
        "points": points,
        "notes": NOTES,
        "wall_seconds": time.perf_counter() - started,
    }


NOTES = [
    "Weak scaling: the batch per process is fixed, so the global batch is "
    "processes * batch_size_per_process.",
    "chars_per_s is abcrnn's tokens_per_s from metrics.csv: characters of the "
    "global batch per second over the logged intervals, validation and saving "
    "excluded; the first interval (warm-up) is dropped and the median counts.",
    "scaling_efficiency = chars_per_s / (processes * chars_per_s of 1 process at "
    "the same batch per process).",
    "1 process runs `python -m abcrnn train` without torchrun or DDP; more "
    "processes run under torchrun with DistributedDataParallel.",
]
