"""Training throughput at the lab's settings, and abcrnn's batch-size sweep.

Rounds alternate between the contenders (lab, abcrnn fp32, abcrnn best, then
again), so that a slow spell of a shared machine hits every contender rather than
one of them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench import Bench, throughput_entry
from measure import bf16_supported, ratio

log = logging.getLogger(__name__)


def training_throughput(
    bench: Bench, peaks: dict[str, float | None]
) -> tuple[dict[str, Any], Path]:
    """Measure training chars/s at the lab's settings, alternating the contenders.

    Returns the section and the run folder of abcrnn's fp32 model, whose weights
    the sampling phase uses.
    """
    plan, settings = bench.plan, bench.plan.lab
    chars_per_step = settings.batch_size * settings.seq_length
    best_bf16 = bf16_supported(bench.device)
    configs = {"abcrnn_fp32": bench.lab_preset(False)}
    configs["abcrnn_best"] = bench.lab_preset(best_bf16)
    bench.abcrnn_side.check_split(configs["abcrnn_fp32"])
    run_dirs = {name: bench.fresh_dir(name) for name in configs}

    # Warm-up: first steps allocate memory and pick kernels.
    trainer = bench.lab_side.new_trainer()
    bench.lab_side.run_steps(trainer, plan.warmup_steps)
    for name, config in configs.items():
        bench.abcrnn_side.throughput_round(config, run_dirs[name], plan.warmup_steps)

    rates: dict[str, list[float]] = {"lab_fp32": [], **{name: [] for name in configs}}
    for round_index in range(plan.rounds):
        seconds = bench.lab_side.run_steps(trainer, plan.steps_per_round)
        rates["lab_fp32"].append(plan.steps_per_round * chars_per_step / seconds)
        until = plan.warmup_steps + (round_index + 1) * plan.steps_per_round
        for name, config in configs.items():
            rate = bench.abcrnn_side.throughput_round(config, run_dirs[name], until)
            rates[name].append(rate)
        log.info("throughput round %d: %s", round_index + 1, _last_rates(rates))

    section = {
        "lab_fp32": throughput_entry(
            rates["lab_fp32"], bench, peaks, False, settings.batch_size
        ),
        "abcrnn_fp32": throughput_entry(
            rates["abcrnn_fp32"], bench, peaks, False, settings.batch_size
        ),
        "abcrnn_best": throughput_entry(
            rates["abcrnn_best"], bench, peaks, best_bf16, settings.batch_size
        ),
    }
    lab_rate = section["lab_fp32"]["chars_per_s"]
    section["ratios"] = {
        name: ratio(section[name]["chars_per_s"], lab_rate)
        for name in ("abcrnn_fp32", "abcrnn_best")
    }
    return section, run_dirs["abcrnn_fp32"]


def _last_rates(rates: dict[str, list[float]]) -> str:
    return ", ".join(
        f"{name} {values[-1]:,.0f} chars/s" for name, values in rates.items()
    )


def batch_size_sweep(bench: Bench, peaks: dict[str, float | None]) -> dict[str, Any]:
    """Measure abcrnn's chars/s at the lab's model size for each batch size."""
    plan = bench.plan
    bf16 = bf16_supported(bench.device)
    points = []
    for batch_size in plan.batch_sizes:
        config = bench.lab_preset(bf16, batch_size=batch_size)
        run_dir = bench.fresh_dir(f"sweep-{batch_size}")
        bench.abcrnn_side.throughput_round(config, run_dir, plan.warmup_steps)
        rate = bench.abcrnn_side.throughput_round(
            config, run_dir, plan.warmup_steps + plan.sweep_steps
        )
        points.append(throughput_entry([rate], bench, peaks, bf16, batch_size))
        log.info("batch size %d: %.0f chars/s", batch_size, rate)
    best = max(points, key=lambda point: point["chars_per_s"])
    return {"points": points, "best": best}
