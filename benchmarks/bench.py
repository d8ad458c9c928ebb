"""One benchmark run's plan, data and contenders, and the matmul peaks it divides by.

harness.py (CPU, the lab's data) and gpu_bench.py (one GPU) build a `Bench` and hand
it to the phase modules: throughput.py, time_to_loss.py, sampling_speed.py and
memory.py. Each phase returns one section of the results JSON.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lab_reference as lab
import torch
from measure import (
    bf16_supported,
    forward_flops_per_char,
    matmul_peak,
    model_flops_utilisation,
)
from sides import AbcrnnSide, LabSide
from workload import Workload


@dataclass(frozen=True)
class Plan:
    """How much of each measurement to run; step counts are optimizer steps."""

    lab: lab.LabSettings = lab.LabSettings()
    rounds: int = 5
    steps_per_round: int = 40
    warmup_steps: int = 3
    batch_sizes: tuple[int, ...] = (8, 16, 32)
    sweep_steps: int = 10
    curve_eval_every: int = 100
    race_changes: dict[str, Any] = field(default_factory=dict)
    race_eval_every: int = 5
    sample_length: int = 1000
    sample_tunes: tuple[int, ...] = (1, 64)
    sample_stream: int = 4  # abcrnn samples this many times `count` tunes
    lab_max_calls: int = 64  # lab sampler calls per measurement, at most
    memory_steps: int = 10
    peak_size: int = 2048
    peak_seconds: float = 2.0


@dataclass
class Bench:
    """One benchmark run: its plan, data, device, contenders and scratch folder."""

    plan: Plan
    workload: Workload
    source_kind: str  # "file" (read like the lab) or "collection" (abcrnn corpus)
    valid_fraction: float
    device: torch.device
    work_dir: Path
    lab_side: LabSide = field(init=False)
    abcrnn_side: AbcrnnSide = field(init=False)

    def __post_init__(self) -> None:
        self.lab_side = LabSide(self.workload, self.plan.lab, self.device)
        self.abcrnn_side = AbcrnnSide(self.workload, self.valid_fraction, self.device)

    def lab_preset(self, bf16: bool, **changes: Any):
        """Return abcrnn's `lab` preset with this plan's lab settings."""
        settings = self.plan.lab
        lab_settings = {
            "embedding_dim": settings.embedding_dim,
            "hidden_size": settings.hidden_size,
            "batch_size": settings.batch_size,
            "seq_len": settings.seq_length,
            "lr": settings.learning_rate,
            "steps": settings.num_training_iterations,
            "bf16": "on" if bf16 else "off",
        }
        return self.abcrnn_side.config("lab", **(lab_settings | changes))

    def forward_flops(self) -> int:
        """Return the forward FLOPs per character of the lab-size model."""
        settings = self.plan.lab
        return forward_flops_per_char(
            len(self.workload.chars), settings.embedding_dim, settings.hidden_size
        )

    def fresh_dir(self, name: str) -> Path:
        """Return a new empty folder under the scratch folder."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work_dir))


def measure_peaks(bench: Bench) -> dict[str, float | None]:
    """Return the measured matmul FLOP/s for fp32, tf32 (CUDA only) and bf16."""
    device, plan = bench.device, bench.plan
    peaks: dict[str, float | None] = {"fp32": None, "tf32": None, "bf16": None}
    if device.type == "cuda":
        saved = torch.backends.cuda.matmul.allow_tf32
        for name, allow in (("fp32", False), ("tf32", True)):
            torch.backends.cuda.matmul.allow_tf32 = allow
            peaks[name] = matmul_peak(
                device, torch.float32, plan.peak_size, plan.peak_seconds
            )
        torch.backends.cuda.matmul.allow_tf32 = saved
    else:
        peaks["fp32"] = matmul_peak(
            device, torch.float32, plan.peak_size, plan.peak_seconds
        )
    if bf16_supported(device):
        peaks["bf16"] = matmul_peak(
            device, torch.bfloat16, plan.peak_size, plan.peak_seconds
        )
    return peaks


def fp32_peak_name(device: torch.device) -> str:
    """Return the peak that fp32 training is held against on `device`.

    On CUDA, cuDNN runs fp32 LSTMs with TF32 tensor cores unless
    torch.backends.cudnn.allow_tf32 is False (it is True by default).
    """
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "fp32"


def throughput_entry(
    rates: list[float],
    bench: Bench,
    peaks: dict[str, float | None],
    bf16: bool,
    batch_size: int,
) -> dict[str, Any]:
    """Return the median chars/s of some rounds with its FLOPs and MFU."""
    peak_name = "bf16" if bf16 else fp32_peak_name(bench.device)
    train_flops = 3 * bench.forward_flops()
    median = statistics.median(rates)
    return {
        "chars_per_s": median,
        "rounds_chars_per_s": rates,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "batch_size": batch_size,
        "seq_len": bench.plan.lab.seq_length,
        "flops_per_char": train_flops,
        "peak_used": peak_name,
        "mfu": model_flops_utilisation(train_flops, median, peaks[peak_name] or 0.0),
    }


# Every phase in a few seconds: a tiny model, a few steps, short samples.
QUICK_PLAN = Plan(
    lab=lab.LabSettings(
        num_training_iterations=6,
        batch_size=4,
        seq_length=16,
        embedding_dim=8,
        hidden_size=16,
    ),
    rounds=2,
    steps_per_round=2,
    warmup_steps=1,
    batch_sizes=(4, 8),
    sweep_steps=2,
    curve_eval_every=3,
    race_changes={
        "embedding_dim": 8,
        "hidden_size": 16,
        "batch_size": 4,
        "seq_len": 16,
        "steps": 6,
        "warmup_steps": 1,
    },
    race_eval_every=3,
    sample_length=40,
    memory_steps=2,
    peak_size=128,
    peak_seconds=0.05,
)
