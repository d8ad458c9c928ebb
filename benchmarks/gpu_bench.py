"""Benchmark the lab's code against abcrnn on one GPU, with nothing but this repository.

    python benchmarks/gpu_bench.py [--data FILE.abc] [--quick] [--out PATH]
    python benchmarks/gpu_bench.py --multi-gpu [--max-processes N] [--quick]

Without --data the tunes are abcrnn's default corpus (O'Neill's 1850 collection,
shipped with music21). The results JSON has the same fields as harness.py. It
contains training throughput at the lab's settings (lab fp32, abcrnn fp32, abcrnn
bf16) and a sweep of batch sizes at the lab's model size. It times the lab's full
run and the wall time abcrnn's `default` preset needs to reach its best validation
loss. It also contains sampling speed for 1 and 64 tunes, peak GPU memory, and MFU
against matmul peaks measured on the same GPU in fp32, tf32 and bf16.

The plan should finish in under 5 minutes on one H100- or H200-class GPU, an
estimate from its step counts. --quick runs a tiny version on any device, the CPU
included.

--multi-gpu measures instead how training throughput scales over 1, 2, 4, ... N
GPUs with DistributedDataParallel (scaling.py), N being every visible GPU or
--max-processes. With --device cpu it runs 2 CPU processes over Gloo, and --quick
shrinks it to seconds.

NOTE: only --quick on a CPU has been run so far. The CUDA code paths (TF32 peaks,
GPU memory, the full plan's timing, --multi-gpu over NCCL) are untested.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from bench import QUICK_PLAN, Bench, Plan  # noqa: E402
from measure import write_json  # noqa: E402
from scaling import (  # noqa: E402
    CPU_SCALING_PLAN,
    GPU_SCALING_PLAN,
    QUICK_SCALING_PLAN,
    scaling_results,
)
from suite import configure_logging, run_suite  # noqa: E402
from workload import (  # noqa: E402
    build_workload,
    tunes_from_collection,
    tunes_from_lab_file,
)

from abcrnn.corpus import DEFAULT_SOURCE  # noqa: E402

BENCHMARKS_DIR = Path(__file__).resolve().parent

# The lab's full settings; longer rounds and larger batches than the CPU plan
# because a GPU step takes milliseconds.
GPU_PLAN = Plan(
    rounds=5,
    steps_per_round=100,
    warmup_steps=10,
    batch_sizes=(8, 32, 128, 512, 2048),
    sweep_steps=30,
    memory_steps=20,
    peak_size=8192,
    peak_seconds=1.0,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        description="Benchmark the lab's code against abcrnn on one GPU."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="ABC file, read as the lab reads it (default: abcrnn's corpus "
        f"{DEFAULT_SOURCE!r})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny version of every phase (seconds)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default: benchmarks/gpu_results.json, or "
        "benchmarks/gpu_results_quick.json with --quick)",
    )
    parser.add_argument(
        "--lab-curve",
        type=Path,
        default=None,
        help="reuse this stored lab curve (default: measure it and write "
        "gpu_lab_curve.json beside --out)",
    )
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        help="share of tunes held out for validation (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="device; auto picks CUDA when present (default: %(default)s)",
    )
    parser.add_argument(
        "--multi-gpu",
        action="store_true",
        help="measure throughput on 1, 2, 4, ... N processes with torchrun and "
        "DistributedDataParallel instead (default: off)",
    )
    parser.add_argument(
        "--max-processes",
        type=int,
        default=None,
        metavar="N",
        help="largest process count for --multi-gpu (default: every visible GPU, "
        "or 2 on a CPU)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log abcrnn's own messages too"
    )
    return parser


def pick_device(name: str) -> torch.device:
    """Return the device for `name`; "auto" prefers CUDA."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results; return the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    device = pick_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: error: --device cuda but no CUDA GPU", file=sys.stderr)
        return 2
    if args.multi_gpu:
        return run_multi_gpu(args, device)
    if device.type == "cpu" and not args.quick:
        print(
            "gpu_bench: error: the full plan is sized for a GPU and would take "
            "hours on a CPU; add --quick, or use harness.py for CPU figures",
            file=sys.stderr,
        )
        return 2
    if args.data is not None and not args.data.is_file():
        print(f"gpu_bench: error: --data {args.data} is not a file", file=sys.stderr)
        return 2

    prefix = "gpu_results_quick" if args.quick else "gpu_results"
    out = args.out or BENCHMARKS_DIR / f"{prefix}.json"
    curve_name = "gpu_lab_curve_quick.json" if args.quick else "gpu_lab_curve.json"
    plan = QUICK_PLAN if args.quick else GPU_PLAN
    with tempfile.TemporaryDirectory(prefix="abcrnn-gpu-bench-") as folder:
        work_dir = Path(folder)
        if args.data is None:
            source, kind = DEFAULT_SOURCE, "collection"
            tunes = tunes_from_collection(source)
        else:
            source, kind = str(args.data), "file"
            tunes = tunes_from_lab_file(args.data, work_dir)
        workload = build_workload(source, tunes, args.valid_fraction, work_dir)
        bench = Bench(plan, workload, kind, args.valid_fraction, device, work_dir)
        results = run_suite(
            bench, "gpu_bench", args.quick, args.lab_curve, out.parent / curve_name
        )
    write_json(out, results)
    logging.info("wrote %s", out)
    return 0


def run_multi_gpu(args: argparse.Namespace, device: torch.device) -> int:
    """Measure throughput over 1 .. N processes and write the scaling JSON."""
    if device.type == "cuda":
        available = torch.cuda.device_count()
        plan = QUICK_SCALING_PLAN if args.quick else GPU_SCALING_PLAN
    else:
        available = os.cpu_count() or 1
        plan = QUICK_SCALING_PLAN if args.quick else CPU_SCALING_PLAN
    max_processes = args.max_processes or (available if device.type == "cuda" else 2)
    units = "GPUs" if device.type == "cuda" else "CPU cores"
    if not 1 <= max_processes <= available:
        print(
            f"gpu_bench: error: --max-processes {max_processes} must be between 1 and "
            f"{available}, the number of {units} on this machine",
            file=sys.stderr,
        )
        return 2
    corpus = str(args.data) if args.data is not None else DEFAULT_SOURCE
    prefix = "gpu_scaling_quick" if args.quick else "gpu_scaling"
    if device.type == "cpu":
        prefix = prefix.replace("gpu_", "cpu_")
    out = args.out or BENCHMARKS_DIR / f"{prefix}.json"
    results = scaling_results(plan, corpus, device, max_processes, args.quick)
    write_json(out, results)
    logging.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
