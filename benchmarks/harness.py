"""Time the lab's code and abcrnn side by side on the lab's data, and write JSON.

    python benchmarks/harness.py --data irish.abc [--quick] [--out PATH]
        [--lab-curve PATH]

Both sides train on the same tunes and are scored on the same validation tunes
(abcrnn's split_corpus with the seed `abcrnn train` uses). The results contain
training throughput at the lab's settings: lab fp32, abcrnn fp32, and abcrnn with
bf16 where the hardware has it. They also contain a batch-size sweep, the wall time
to reach the lab's best validation loss, sampling speed for 1 and 64 tunes, peak
memory and MFU, with abcrnn / lab ratios. suite.py assembles the fields.

The lab's full 3000-step run is the longest part (see FULL_PLAN). It is written
to lab_curve.json beside --out, and --lab-curve reuses such a file. --quick shrinks
every phase to seconds, for smoke tests.
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
from suite import configure_logging, run_suite  # noqa: E402
from workload import build_workload, tunes_from_lab_file  # noqa: E402

from abcrnn.devices import keep_freed_memory  # noqa: E402

BENCHMARKS_DIR = Path(__file__).resolve().parent

# Sized for a 2-core CPU. On one (AMD EPYC, Zen 4) the lab's 3000 steps took 10 to
# 11 minutes and the throughput rounds with the batch-size sweep about 3. The race
# takes at most 5 (1000 steps of `default` at about 0.25 s each), and whole runs
# took 16 to 17 minutes.
FULL_PLAN = Plan(lab_max_calls=16)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        description="Benchmark the lab's code against abcrnn on the lab's data."
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="ABC file of the lab's tunes"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny version of every phase (seconds)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default: benchmarks/results.json, or "
        "benchmarks/results_quick.json with --quick)",
    )
    parser.add_argument(
        "--lab-curve",
        type=Path,
        default=None,
        help="reuse this stored lab curve instead of running the lab's full "
        "training (default: measure it and write lab_curve.json beside --out)",
    )
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        help="share of tunes held out for validation (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="device for both sides (default: %(default)s)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log abcrnn's own messages too"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results; return the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if not args.data.is_file():
        print(f"harness: error: --data {args.data} is not a file", file=sys.stderr)
        return 2
    name = "results_quick.json" if args.quick else "results.json"
    out = args.out or BENCHMARKS_DIR / name
    curve_name = "lab_curve_quick.json" if args.quick else "lab_curve.json"
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    device = torch.device(args.device)
    # abcrnn's training sets glibc's malloc to keep freed memory, for the whole
    # process. Both sides run in this process, so it is set before either runs:
    # the lab's code gets the same allocator in every phase, and the ratios
    # compare the code alone.
    keep_freed_memory()

    with tempfile.TemporaryDirectory(prefix="abcrnn-bench-") as folder:
        work_dir = Path(folder)
        tunes = tunes_from_lab_file(args.data, work_dir)
        workload = build_workload(str(args.data), tunes, args.valid_fraction, work_dir)
        bench = Bench(plan, workload, "file", args.valid_fraction, device, work_dir)
        results = run_suite(
            bench, "harness", args.quick, args.lab_curve, out.parent / curve_name
        )
    write_json(out, results)
    logging.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
