"""Command-line options that several subcommands share."""

from __future__ import annotations

import argparse

from abcrnn.config import BF16_MODES


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --prime, --temperature, --max-length, --seed, --at-once, --bf16 and
    --device to `parser`."""
    parser.add_argument(
        "--prime",
        default=None,
        metavar="TEXT",
        help="text each tune starts with; write newlines as $'X:1\\nT:' in bash "
        "(default: 'X:1' and a newline, or its longest prefix in the vocabulary)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="sampling temperature: 0 = greedy, above 1 = more surprising "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=1500,
        metavar="N",
        help="maximum new characters per tune, not counting the prime "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--at-once",
        type=int,
        default=64,
        metavar="N",
        help="tunes sampled together: when one ends, the next starts in its place, "
        "0 = all of them together (default: %(default)s)",
    )
    parser.add_argument(
        "--bf16",
        choices=BF16_MODES,
        default="auto",
        help="bfloat16 matmuls for sampling: auto uses them on CUDA and on CPUs "
        "with AVX-512 BF16/AMX (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default="auto",
        help="device to sample on (default: %(default)s)",
    )


def sampling_settings(args: argparse.Namespace) -> dict[str, object]:
    """Return the values of the flags that `add_sampling_arguments` adds, by field.

    The keys are SampleConfig's field names, so the dict fills in SampleConfig or
    EvaluateConfig; --device is left out.
    """
    names = ("prime", "temperature", "max_length", "seed", "at_once", "bf16")
    return {name: getattr(args, name) for name in names}
