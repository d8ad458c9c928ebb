"""Smoke-run the benchmark scripts in --quick mode and check their JSON fields.

The figures depend on the machine, so no test asserts a figure: the runs must
finish and write every field. A few pure helpers get exact-value tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import lab_reference  # noqa: E402
import measure  # noqa: E402
import torch  # noqa: E402
import workload  # noqa: E402

# Eight short reels in the lab's layout: tunes separated by blank lines, and one
# triple newline (after tune 2), which the lab's extractor turns into an extra copy.
TINY_CORPUS = (
    "\n\n".join(
        f"X:{number}\nT:Reel {number}\nM:4/4\nL:1/8\nK:D\n"
        f"|:d2fd {note}dfd|edcB A2FA|d2fd {note}dfd|1 edcB d4:|2 edcB d2z2|]"
        for number, note in enumerate("ABcdefga", start=1)
    ).replace("|]\n\nX:3", "|]\n\n\nX:3")
    + "\n"
)

# Every field a results file must contain, as dotted paths. The loops below add the
# fields of each contender and of each tune count (1 and 64).
REQUIRED_FIELDS = [
    "schema_version",
    "hardware.device",
    "hardware.avx512_bf16",
    "hardware.amx_bf16",
    "hardware.bf16_fast_path",
    "workload.train_tunes",
    "workload.valid_tunes",
    "workload.sha256",
    "plan.lab.hidden_size",
    "matmul_peak_flops.fp32",
    "matmul_peak_flops.tf32",
    "matmul_peak_flops.bf16",
    "batch_size_sweep.points",
    "batch_size_sweep.best.chars_per_s",
    "batch_size_sweep.best.batch_size",
    "time_to_lab_best.lab.best_val_loss",
    "time_to_lab_best.lab.best_step",
    "time_to_lab_best.lab.train_seconds_to_best",
    "time_to_lab_best.abcrnn_default.reached",
    "time_to_lab_best.abcrnn_default.steps",
    "time_to_lab_best.abcrnn_default.train_seconds",
    "time_to_lab_best.abcrnn_default.curve",
    "time_to_lab_best.speedup",
    "sampling.model.trained_steps",
    "sampling.model.val_loss",
    "memory.ratios.abcrnn_train_fp32",
    "wall_seconds",
]
for _name in ("lab_fp32", "abcrnn_fp32", "abcrnn_best"):
    for _field in ("chars_per_s", "rounds_chars_per_s", "flops_per_char", "mfu"):
        REQUIRED_FIELDS.append(f"training_throughput.{_name}.{_field}")
REQUIRED_FIELDS += [
    "training_throughput.ratios.abcrnn_fp32",
    "training_throughput.ratios.abcrnn_best",
]
for _count in (1, 64):
    for _side in ("lab", "abcrnn"):
        for _field in ("chars_per_s", "tunes_per_s", "tunes_finished", "mfu"):
            REQUIRED_FIELDS.append(f"sampling.{_side}_{_count}.{_field}")
    REQUIRED_FIELDS += [
        f"sampling.abcrnn_{_count}.at_once",
        f"sampling.abcrnn_{_count}.bf16",
        f"sampling.ratios_{_count}.chars_per_s",
        f"sampling.ratios_{_count}.tunes_per_s",
    ]
REQUIRED_FIELDS += [
    "sampling.abcrnn_64_one_call.tunes_per_s",
    "sampling.ratios_64_one_call.tunes_per_s",
]
for _job in ("lab_train", "abcrnn_train_fp32", "abcrnn_train_best", "lab_sample"):
    REQUIRED_FIELDS += [f"memory.{_job}.peak_bytes", f"memory.{_job}.delta_bytes"]
for _count in (1, 64):
    REQUIRED_FIELDS.append(f"memory.abcrnn_sample_{_count}.delta_bytes")


def missing_fields(results: dict) -> list[str]:
    """Return the REQUIRED_FIELDS that `results` lacks."""
    missing = []
    for path in REQUIRED_FIELDS:
        value = results
        for key in path.split("."):
            if not isinstance(value, dict) or key not in value:
                missing.append(path)
                break
            value = value[key]
    return missing


def run_script(arguments: list[str], cwd: Path) -> subprocess.Popen:
    """Start a benchmark script with the test's Python, output captured."""
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(
        [sys.executable, *arguments],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory) -> dict[str, dict]:
    """Run harness.py and gpu_bench.py --quick side by side; return both JSONs."""
    folder = tmp_path_factory.mktemp("benchmarks")
    corpus = folder / "tiny.abc"
    corpus.write_text(TINY_CORPUS, encoding="utf-8")
    outputs = {"harness": folder / "harness.json", "gpu_bench": folder / "gpu.json"}
    processes = {
        "harness": run_script(
            [
                str(BENCHMARKS / "harness.py"),
                "--data",
                str(corpus),
                "--quick",
                "--valid-fraction",
                "0.25",
                "--out",
                str(outputs["harness"]),
            ],
            folder,
        ),
        # No --data: the script falls back to abcrnn's default corpus.
        "gpu_bench": run_script(
            [
                str(BENCHMARKS / "gpu_bench.py"),
                "--quick",
                "--device",
                "cpu",
                "--out",
                str(outputs["gpu_bench"]),
            ],
            folder,
        ),
    }
    logs = {
        name: process.communicate(timeout=600)[0] for name, process in processes.items()
    }
    for name, process in processes.items():
        assert process.returncode == 0, f"{name} failed:\n{logs[name][-3000:]}"
    return {
        name: json.loads(path.read_text(encoding="utf-8"))
        for name, path in outputs.items()
    }


# Each quick run starts torch in several child processes for the memory figures.
@pytest.mark.slow
def test_harness_quick_has_every_field(quick_results: dict[str, dict]) -> None:
    results = quick_results["harness"]
    assert missing_fields(results) == []
    assert results["script"] == "harness"
    assert results["quick"] is True
    assert results["workload"]["valid_tunes"] == 2


@pytest.mark.slow
def test_gpu_bench_quick_has_every_field(quick_results: dict[str, dict]) -> None:
    results = quick_results["gpu_bench"]
    assert missing_fields(results) == []
    assert results["script"] == "gpu_bench"
    assert results["workload"]["source"] == "oneills1850"


def test_extract_songs_keeps_lab_quirks() -> None:
    # Two tunes with a triple newline between them. With one newline at the end of
    # the file, the last tune has no blank line after it and is missed.
    text = "X:1\nK:D\nabc\n\n\nX:2\nK:G\ndef\n"
    assert lab_reference.extract_songs(text) == ["X:1\nK:D\nabc"]
    # With a blank line after it, the triple newline yields a second copy.
    assert lab_reference.extract_songs(text + "\n") == [
        "X:1\nK:D\nabc",
        "\nX:2\nK:G\ndef",
        "X:2\nK:G\ndef",
    ]


def test_validation_loss_scores_each_target_once() -> None:
    # 11 ids in windows of 4 targets: two full windows, then a tail of 2 targets.
    ids = torch.arange(11)
    inputs: list[list[int]] = []

    def uniform_logits(x: torch.Tensor) -> torch.Tensor:
        inputs.extend(x.tolist())
        return torch.zeros(*x.shape, 11)

    loss = workload.validation_loss(uniform_logits, ids, seq_len=4, batch_size=8)
    assert inputs == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert loss == pytest.approx(torch.log(torch.tensor(11.0)).item())


def test_forward_flops_per_char_lab_model() -> None:
    # 2 * 4H(E + H) for the LSTM plus 2HV for the output layer, E=256, H=1024, V=83.
    expected = 2 * 4 * 1024 * (256 + 1024) + 2 * 1024 * 83
    assert measure.forward_flops_per_char(83, 256, 1024) == expected
    assert expected == 10_655_744


def test_forward_flops_counts_upper_layers() -> None:
    one_layer = measure.forward_flops_per_char(10, 4, 8, num_layers=1)
    two_layers = measure.forward_flops_per_char(10, 4, 8, num_layers=2)
    assert two_layers - one_layer == 2 * 4 * 8 * (8 + 8)


def test_ratio_handles_missing_and_zero() -> None:
    assert measure.ratio(6.0, 3.0) == 2.0
    assert measure.ratio(0.0, 3.0) == 0.0
    assert measure.ratio(None, 3.0) is None
    assert measure.ratio(6.0, 0.0) is None
