"""Measurement helpers shared by the benchmark scripts.

Matmul peaks, model FLOPs, memory peaks, hardware facts and the JSON output. The
scripts that import this module set OMP_WAIT_POLICY=PASSIVE before torch loads, so
idle OpenMP threads sleep instead of spinning on a shared machine.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from abcrnn import cell_kernels
from abcrnn.bf16_lstm import bf16_linear
from abcrnn.devices import keep_freed_memory

# One line of a child process's stdout that starts with this marker carries its JSON.
RESULT_MARKER = "BENCHMARK-RESULT "


def cpu_flags() -> set[str]:
    """Return the CPU feature flags from /proc/cpuinfo (empty where it is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform.processor()."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor()
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def bf16_supported(device: torch.device) -> bool:
    """Return whether bf16 matmuls have a fast path on `device`.

    On a CPU that means the avx512_bf16 or amx_bf16 instructions. Without them
    oneDNN emulates bf16 and it runs slower than fp32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def hardware_info(device: torch.device) -> dict[str, Any]:
    """Return the machine, library versions and thread settings behind a result."""
    flags = cpu_flags()
    info: dict[str, Any] = {
        "device": str(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "bf16_fast_path": bf16_supported(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "malloc_keeps_freed_memory": _keeps_freed_memory(),
        "fused_lstm_step": cell_kernels.kernels() is not None,
    }
    if device.type == "cuda":
        info["gpu_name"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda_version"] = torch.version.cuda
        info["cuda_matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    return info


def _keeps_freed_memory() -> bool:
    """Return True if this process has set malloc to keep freed memory.

    keep_freed_memory is cached, so a call made here would set it too; only a
    call that already happened (by the harness or by training) counts.
    """
    return keep_freed_memory.cache_info().currsize > 0 and keep_freed_memory()


def synchronize(device: torch.device) -> None:
    """Wait until every queued kernel on `device` has finished (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(function: Callable[[], Any], device: torch.device) -> float:
    """Return the wall time in seconds of one call, with the device synchronised."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def matmul_peak(
    device: torch.device, dtype: torch.dtype, size: int, min_seconds: float
) -> float:
    """Return the FLOP/s of repeated (size, size) @ (size, size) products.

    The best of several timed batches counts, after one warm-up product, and timing
    goes on for at least `min_seconds`. This is the peak the MFU figures divide by.
    On CPU in bf16 the product is timed twice, with torch.matmul and with oneDNN's
    packed linear (which abcrnn's bf16 LSTM kernels use), and the faster counts.
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    products = [lambda: torch.matmul(a, b)]
    if device.type == "cpu" and dtype == torch.bfloat16:
        linear = bf16_linear(b.t(), size)  # x -> x @ b
        products.append(lambda: linear(a))
    flops = 2 * size**3
    return max(_best_rate(product, flops, device, min_seconds) for product in products)


def _best_rate(
    product: Callable[[], object],
    flops: int,
    device: torch.device,
    min_seconds: float,
) -> float:
    product()
    best = 0.0
    spent = 0.0
    repeats = 1
    while spent < min_seconds or best == 0.0:
        seconds = time_call(lambda count=repeats: _repeat(product, count), device)
        spent += seconds
        best = max(best, flops * repeats / seconds)
        if seconds < 0.05:
            repeats *= 2
    return best


def _repeat(product: Callable[[], object], count: int) -> None:
    for _ in range(count):
        product()


def forward_flops_per_char(
    vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int = 1
) -> int:
    """Return the matmul FLOPs of one character's forward pass through the network.

    Each LSTM layer costs 2 * 4H * (input + H), where the input is E for the first
    layer and H above it, and the output layer costs 2 * H * V. The embedding is a
    table lookup and the gate nonlinearities are left out. Training costs about
    three times the forward pass.
    """
    flops = 2 * 4 * hidden_size * (embedding_dim + hidden_size)
    flops += (num_layers - 1) * 2 * 4 * hidden_size * (2 * hidden_size)
    return flops + 2 * hidden_size * vocab_size


def model_flops_utilisation(
    flops_per_char: float, chars_per_second: float, peak_flops: float
) -> float:
    """Return achieved FLOP/s as a fraction of `peak_flops` (0.0 for a zero peak)."""
    if peak_flops <= 0:
        return 0.0
    return flops_per_char * chars_per_second / peak_flops


def memory_status() -> dict[str, int]:
    """Return this process's VmHWM, VmRSS, RssAnon and RssFile in bytes.

    Reads /proc/self/status (Linux). Elsewhere only VmHWM is filled in, from
    ru_maxrss, and the other sizes are 0. ru_maxrss would not do on Linux in a
    child process: the kernel carries the parent's resident size at fork into the
    child's ru_maxrss, across exec too, so a child of a large parent starts high.
    """
    try:
        text = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"VmHWM": peak, "VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    sizes = {"VmHWM": 0, "VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in sizes:
            sizes[name] = int(value.split()[0]) * 1024
    return sizes


def reset_peak_rss() -> bool:
    """Lower this process's peak RSS (VmHWM) to its current RSS; return success.

    Writing "5" to /proc/self/clear_refs does this on Linux 4.0 and later. Elsewhere
    the peak keeps any earlier high-water mark.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def report_child_result(result: dict[str, Any]) -> None:
    """Print `result` as the JSON line that `run_child` looks for."""
    print(RESULT_MARKER + json.dumps(result), flush=True)


def run_child(script: Path, arguments: list[str], timeout: float) -> dict[str, Any]:
    """Run `script` in a fresh Python and return the JSON its marked line carries.

    Raises RuntimeError with the child's stderr when it fails or prints no result.
    """
    command = [sys.executable, str(script), *arguments]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    raise RuntimeError(
        f"{' '.join(command)} exited with status {completed.returncode} and no "
        f"result; its stderr ends with:\n{completed.stderr[-2000:]}"
    )


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` to `path` as indented JSON, atomically, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return numerator / denominator, or None when either is missing or zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator
