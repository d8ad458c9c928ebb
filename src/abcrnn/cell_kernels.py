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

    Each array is a tensor or the address of one (an int, for rows of a larger
    tensor). All must be contiguous and on the CPU: fp32 for state and gradients,
    bf16 for matmul inputs and outputs, with the shapes given in lstm_cell.c.
    """

    def __init__(self, library: ctypes.CDLL) -> None:
        self._forward = library.lstm_forward_step
        self._forward.argtypes = [_size, _size] + [_pointer] * 8
        self._forward.restype = None
        self._backward = library.lstm_backward_step
        self._backward.argtypes = [_size, _size] + [_pointer] * 7
        self._backward.restype = None
        self._dropout = library.dropout_apply
        self._dropout.argtypes = [
            _size,
            _pointer,
            _pointer,
            ctypes.c_uint64,
            ctypes.c_uint32,
            ctypes.c_float,
        ]
        self._dropout.restype = None

    def forward(
        self,
        xproj: Array,
        product: Array,
        c_prev: Array,
        c_next: Array,
        h: Array,
        h_low: Array,
        saved: Array | None,
        shape: tuple[int, int] | None = None,
        ids: Array | None = None,
    ) -> None:
        """Run one forward step for a batch, writing c_next, h, h_low and saved.

        With `ids` (B) int64, xproj is a table (V, 4H) indexed by them; every id
        must lie in [0, V). `shape` is (batch, hidden), needed when c_prev is an
        address.
        """
        batch, hidden = shape or c_prev.shape
        arrays = (xproj, ids, product, c_prev, c_next, h, h_low, saved)
        self._forward(batch, hidden, *(_address(a) for a in arrays))

    def backward(
        self,
        dh_product: Array | None,
        dh_direct: Array,
        saved: Array,
        dc: torch.Tensor,
        grad_gates: Array,
        grad_gates_low: Array,
        ids: Array | None = None,
    ) -> None:
        """Run one backward step for a batch, updating dc and writing the gradients.

        With `ids`, grad_gates is a table's gradient (V, 4H) that row b's gate
        gradients are added to, at row ids[b].
        """
        batch, hidden = dc.shape
        arrays = (dh_product, dh_direct, saved, dc, grad_gates, grad_gates_low, ids)
        self._backward(batch, hidden, *(_address(a) for a in arrays))

    def dropout(self, x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
        """Return x with values zeroed with probability p and the rest scaled by
        1 / (1 - p); the mask depends only on `seed` and each value's position.

        x must be a contiguous fp32 CPU tensor and 0 <= p < 1.
        """
        out = torch.empty_like(x)
        threshold = min(round(p * 2.0**32), 2**32 - 1)
        self._dropout(
            x.numel(), x.data_ptr(), out.data_ptr(), seed, threshold, 1.0 / (1.0 - p)
        )
        return out


Array = torch.Tensor | int


def _address(array: Array | None) -> int | None:
    if array is None or isinstance(array, int):
        return array
    return array.data_ptr()


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
