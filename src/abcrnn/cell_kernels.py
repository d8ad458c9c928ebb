"""The fused LSTM step of lstm_cell.c: compiled on first use, called through ctypes.

abcrnn.bf16_lstm runs one LSTM time step as a bf16 matmul followed by the gate
arithmetic. In PyTorch the arithmetic is about a dozen element-wise ops, each a
separate pass over memory with its own dispatch; lstm_cell.c does it in one pass,
forward and backward. It is compiled once per machine with the system's C compiler
(`$CC`, else `cc`) for this CPU and kept in `$XDG_CACHE_HOME/abcrnn` (default
`~/.cache/abcrnn`), named by a hash of the source, compiler and flags.

When no compiler works, `library()` returns None and bf16_lstm keeps PyTorch's ops;
setting ABCRNN_CELL_KERNEL=off does the same on purpose.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("lstm_cell.c")
# GCC gives up vectorising a loop that needs more than 10 run-time alias checks by
# default; the gate blocks of one row need more, hence the raised limit.
FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fno-trapping-math",
    "--param",
    "vect-max-version-for-alias-checks=100",
    "-shared",
    "-fPIC",
)
SWITCH = "ABCRNN_CELL_KERNEL"
_pointer = ctypes.c_void_p
_size = ctypes.c_int64


class CellKernels:
    """The two entry points of lstm_cell.c, taking tensors.

    Every tensor must be contiguous and on the CPU: fp32 for state and gradients,
    bf16 for matmul inputs and outputs, with the shapes given in lstm_cell.c.
    """

    def __init__(self, library: ctypes.CDLL) -> None:
        self._forward = library.lstm_forward_step
        self._forward.argtypes = [_size, _size] + [_pointer] * 7
        self._forward.restype = None
        self._backward = library.lstm_backward_step
        self._backward.argtypes = [_size, _size] + [_pointer] * 6
        self._backward.restype = None

    def forward(
        self,
        xproj: torch.Tensor,
        product: torch.Tensor,
        c_prev: torch.Tensor,
        c_next: torch.Tensor,
        h: torch.Tensor,
        h_low: torch.Tensor,
        saved: torch.Tensor | None,
    ) -> None:
        """Run one forward step for a batch, writing c_next, h, h_low and saved."""
        batch, hidden = c_prev.shape
        self._forward(
            batch,
            hidden,
            xproj.data_ptr(),
            product.data_ptr(),
            c_prev.data_ptr(),
            c_next.data_ptr(),
            h.data_ptr(),
            h_low.data_ptr(),
            None if saved is None else saved.data_ptr(),
        )

    def backward(
        self,
        dh_product: torch.Tensor | None,
        dh_direct: torch.Tensor,
        saved: torch.Tensor,
        dc: torch.Tensor,
        grad_gates: torch.Tensor,
        grad_gates_low: torch.Tensor,
    ) -> None:
        """Run one backward step for a batch, updating dc and writing the gradients."""
        batch, hidden = dc.shape
        self._backward(
            batch,
            hidden,
            None if dh_product is None else dh_product.data_ptr(),
            dh_direct.data_ptr(),
            saved.data_ptr(),
            dc.data_ptr(),
            grad_gates.data_ptr(),
            grad_gates_low.data_ptr(),
        )


@functools.cache
def kernels() -> CellKernels | None:
    """Return the compiled kernels, or None where they cannot be built or are off."""
    if os.environ.get(SWITCH, "").lower() in ("0", "off", "no", "false"):
        return None
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.info("no C compiler found; LSTM steps use PyTorch's element-wise ops")
        return None
    try:
        return CellKernels(ctypes.CDLL(str(_build(compiler))))
    except (OSError, subprocess.SubprocessError) as error:
        log.warning(
            "could not build the fused LSTM step with %s (%s); using PyTorch's "
            "element-wise ops, which are slower",
            compiler,
            error,
        )
        return None


def _build(compiler: str) -> Path:
    """Compile lstm_cell.c unless a build for this source and machine is cached."""
    source = SOURCE.read_bytes()
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, check=True, timeout=30
    ).stdout
    key = hashlib.sha256()
    for part in (source, version, " ".join(FLAGS).encode(), _cpu_flags()):
        key.update(part)
    folder = _cache_folder()
    target = folder / f"lstm_cell-{key.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    # Build under a unique name, then rename: concurrent processes (torchrun ranks)
    # each finish with a whole file in place.
    handle, partial = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(handle)
    try:
        result = subprocess.run(
            [compiler, *FLAGS, "-o", partial, str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise OSError(result.stderr.strip().splitlines()[-1:] or "no message")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _cache_folder() -> Path:
    """Return a writable folder for the build: the user cache, else a temp folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    folder = Path(base).expanduser() / "abcrnn"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="abcrnn-kernels-"))


def _cpu_flags() -> bytes:
    """Return the CPU's feature flags (the build targets this CPU: -march=native)."""
    try:
        with open("/proc/cpuinfo", "rb") as info:
            for line in info:
                if line.startswith(b"flags"):
                    return line
    except OSError:
        pass
    return platform.processor().encode()
