"""Pick the device, bfloat16 autocast and thread count for a run."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
from pathlib import Path

import torch

from abcrnn.errors import ConfigError

# CPU feature flags (Linux /proc/cpuinfo names) with native bfloat16 matrix support.
# Without one of them, bfloat16 on a CPU is emulated and slower than float32.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(name: str) -> torch.device:
    """Return the torch device for "auto", "cpu", "cuda" or "mps".

    "auto" prefers CUDA, then Apple's MPS, then the CPU. Asking for a device that
    is not available raises ConfigError.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was requested but this PyTorch build sees no CUDA GPU; "
            "use --device cpu or --device auto"
        )
    if name == "mps" and not _mps_available():
        raise ConfigError(
            "--device mps was requested but MPS is not available here; "
            "use --device cpu or --device auto"
        )
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def cpu_supports_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Return True when the CPU flags list AVX-512 BF16 or AMX BF16.

    NOTE: reads /proc/cpuinfo, so it returns False on systems without that file
    (macOS, Windows) even when the CPU has the instructions.
    """
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in CPU_BF16_FLAGS)
    return False


def resolve_bf16(mode: str, device: torch.device) -> bool:
    """Decide whether to train under bfloat16 autocast ("auto", "on" or "off").

    "auto" turns it on for CUDA GPUs that support bfloat16 and for CPUs with native
    bfloat16 instructions. "on" raises ConfigError where neither holds.
    """
    if mode == "off":
        return False
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        supported = cpu_supports_bf16()
    else:
        supported = False
    if mode == "on" and not supported:
        raise ConfigError(
            f"--bf16 on needs a CUDA GPU with bfloat16 or a CPU with AVX-512 BF16 or "
            f"AMX, and {device.type} has neither; use --bf16 auto or --bf16 off"
        )
    return supported


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Return a bfloat16 autocast context for `device`, or a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def set_threads(threads: int) -> None:
    """Set the CPU thread count for PyTorch ops; 0 keeps PyTorch's default."""
    if threads > 0:
        torch.set_num_threads(threads)


# glibc's malloc serves blocks above its mmap threshold (128 KiB at first, rising to
# at most 32 MiB as such blocks are freed) with fresh pages from the kernel. It
# returns them when they are freed, so a training step whose tensors exceed the
# threshold pays page faults on every allocation. Measured on a 2-core AMD EPYC:
# the default preset's step (batch 32, sequence 160, LSTM 512) took 218 ms with
# glibc's defaults and 187 ms with both thresholds at 1 GiB. The lab's fp32 step
# (batch 8, LSTM 1024) ran at 3,700-4,100 against 4,200-4,400 chars/s.
KEEP_FREED_BELOW = 1 << 30
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks under 1 GiB for reuse; True if it did.

    This applies to the whole process and lasts until it exits: memory freed by one
    training step stays mapped for the next, so the process's resident size stays
    near its peak. Elsewhere than on Linux with glibc it does nothing.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BELOW)
        and libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BELOW)
    )
