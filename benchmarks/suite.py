"""Run every phase of a benchmark in order and assemble the results JSON.

Shared by harness.py and gpu_bench.py; both write the same fields.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from bench import Bench, measure_peaks
from measure import hardware_info
from memory import memory_section
from sampling_speed import sampling_speed
from throughput import batch_size_sweep, training_throughput
from time_to_loss import lab_curve, time_to_lab_best

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

NOTES = [
    "chars_per_s counts training characters (batch_size * seq_len per step) or "
    "sampled characters, per second of wall time.",
    "The lab code runs without its Comet logging, live plot and checkpoint saves. "
    "abcrnn runs with TensorBoard, periodic checkpoints and its own validation off; "
    "it still validates and saves at the last step of each training call, outside "
    "the timed steps.",
    "abcrnn's training chars/s is its own tokens_per_s over the timed steps. Each "
    "throughput round is one training call that resumes from the previous round.",
    "Time to the lab's best loss counts training time only, validation excluded; "
    "abcrnn's includes its setup (reading the corpus, building the model).",
    "On CUDA, cuDNN runs fp32 LSTMs with TF32 unless cudnn.allow_tf32 is off, so "
    "fp32 runs are held against the tf32 peak there.",
    "Validation loss is the mean cross-entropy in nats per character over the "
    "whole validation text, in windows of 100 characters from a zero state, the "
    "same function for both sides.",
    "MFU = flops_per_char * chars_per_s / measured matmul peak of the precision in "
    "peak_used; flops_per_char counts the LSTM and output-layer matmuls, three "
    "times the forward pass for training.",
]


def run_suite(
    bench: Bench,
    script: str,
    quick: bool,
    stored_curve: Path | None,
    curve_out: Path,
) -> dict[str, Any]:
    """Run all phases on `bench` and return the results as a JSON-ready dict."""
    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "script": script,
        "quick": quick,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "hardware": hardware_info(bench.device),
        "workload": bench.workload.summary(),
        "plan": plan_summary(bench),
        "notes": NOTES,
    }

    log.info("measuring matmul peaks")
    peaks = measure_peaks(bench)
    results["matmul_peak_flops"] = peaks

    log.info("training throughput at the lab's settings")
    throughput, model_dir = training_throughput(bench, peaks)
    results["training_throughput"] = throughput
    results["batch_size_sweep"] = batch_size_sweep(bench, peaks)

    log.info("time to reach the lab's best validation loss")
    record, origin = lab_curve(bench, stored_curve, curve_out)
    results["time_to_lab_best"] = time_to_lab_best(bench, record, origin)

    log.info("sampling speed")
    results["sampling"] = sampling_speed(bench, model_dir, peaks)

    log.info("peak memory")
    results["memory"] = memory_section(bench)
    results["wall_seconds"] = time.perf_counter() - started
    return results


def plan_summary(bench: Bench) -> dict[str, Any]:
    """Return the plan as plain values, with the device and validation share."""
    plan = dataclasses.asdict(bench.plan)
    plan["device"] = str(bench.device)
    plan["valid_fraction"] = bench.valid_fraction
    return plan


def configure_logging(verbose: bool) -> None:
    """Log progress to stderr; show abcrnn's own INFO messages only when `verbose`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not verbose:
        logging.getLogger("abcrnn").setLevel(logging.WARNING)
    # The lab's get_batch builds tensors from lists of numpy arrays, on purpose.
    warnings.filterwarnings("ignore", message="Creating a tensor from a list")
