"""The fused LSTM step of lstm_cell.c: compiled on first use, called through ctypes.

abcrnn.bf16_lstm runs one LSTM time step as a bf16 matmul followed by the gate
arithmetic. In PyTorch the arithmetic is about a dozen element-wise ops, each a
separate pass over memory with its own dispatch cost. lstm_cell.c does it in one
pass, forward and backward.

The file is compiled once per machine with the system's C compiler (`$CC`, else
`cc`) for this CPU. The build is kept in `$XDG_CACHE_HOME/abcrnn` (default
`~/.cache/abcrnn`), named by a hash of the source, compiler, flags and CPU. The
library's SHA-256 is written beside it, and a library that does not match it is
built again rather than loaded. Where that folder cannot be written, each process
builds in a temporary folder that it removes once the library is loaded.

When no compiler works, `kernels()` returns None and bf16_lstm keeps PyTorch's
ops. Setting ABCRNN_CELL_KERNEL=off does the same on purpose.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("lstm_cell.c")
# By default GCC gives up vectorising a loop that needs more than 10 run-time alias
# checks. The gate blocks of one row need more, so the limit is raised.
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

        With `ids` (B) int64, xproj is a table (V, 4H) indexed by them, and every
        id must lie in [0, V). `shape` is (batch, hidden), needed when c_prev is an
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
        """Return x with each value zeroed with probability p, the rest scaled by
        1 / (1 - p). The mask depends only on `seed` and each value's position.

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
    # $CC may carry words of its own ("ccache gcc", "gcc -std=c11").
    command = shlex.split(os.environ.get("CC", ""))
    if not command:
        found = shutil.which("cc") or shutil.which("gcc")
        if found is None:
            log.warning(
                "no C compiler found (set CC or install cc); LSTM steps use "
                "PyTorch's element-wise ops, which are slower"
            )
            return None
        command = [found]
    try:
        return _load(command)
    except (OSError, subprocess.SubprocessError, AttributeError) as error:
        log.warning(
            "could not build or load the fused LSTM step with %s (%s); using "
            "PyTorch's element-wise ops, which are slower",
            " ".join(command),
            error,
        )
        return None


def _load(command: list[str]) -> CellKernels:
    """Load the cached build for this source, compiler and CPU, building it first
    if it is missing or damaged."""
    name = _build_name(command)
    folder = _cache_folder()
    if folder is not None:
        target = folder / name
        if _intact(target):
            return CellKernels(ctypes.CDLL(str(target)))
        if os.access(folder, os.W_OK):
            _compile(command, target)
            return CellKernels(ctypes.CDLL(str(target)))
    # No cache to write to: build in a temporary folder and remove it once loaded
    # (the library stays mapped after its file is gone).
    log.info("no writable cache folder for the fused LSTM step; building it anew")
    with tempfile.TemporaryDirectory(prefix="abcrnn-kernels-") as scratch:
        target = Path(scratch) / name
        _compile(command, target)
        return CellKernels(ctypes.CDLL(str(target)))


def _build_name(command: list[str]) -> str:
    """Return the file name of the build: a hash of what the binary depends on."""
    version = subprocess.run(
        [*command, "--version"], capture_output=True, check=True, timeout=30
    ).stdout
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), version, " ".join(FLAGS).encode(), _cpu_flags()):
        key.update(part)
    return f"lstm_cell-{key.hexdigest()[:16]}.so"


def _digest_path(library: Path) -> Path:
    return library.with_suffix(".sha256")


def _intact(library: Path) -> bool:
    """Return True if `library` matches the digest written beside it.

    Loading a truncated library kills the process with SIGBUS, which Python
    cannot catch, so a file whose digest is missing or differs is built again.
    """
    try:
        expected = _digest_path(library).read_text(encoding="ascii").strip()
        actual = hashlib.sha256(library.read_bytes()).hexdigest()
    except (OSError, UnicodeDecodeError):
        return False
    return actual == expected


def _compile(command: list[str], target: Path) -> None:
    """Compile lstm_cell.c to `target`, with its digest beside it.

    Both files are written under temporary names, flushed to disk and renamed, so
    concurrent builds (torchrun ranks) and interrupted ones leave whole files.
    """
    handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    digest_partial = partial + ".sha256"
    try:
        result = subprocess.run(
            [*command, *FLAGS, "-o", partial, str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            last = lines[-1] if lines else "no message"
            raise OSError(f"exit status {result.returncode}: {last}")
        data = Path(partial).read_bytes()
        if not data.startswith(b"\x7fELF"):
            raise OSError(f"{command[0]} wrote no shared library to {partial}")
        _write_synced(partial, data)
        _write_synced(digest_partial, hashlib.sha256(data).hexdigest().encode())
        os.replace(partial, target)
        os.replace(digest_partial, _digest_path(target))
    finally:
        for leftover in (partial, digest_partial):
            if os.path.exists(leftover):
                os.unlink(leftover)


def _write_synced(path: str, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _cache_folder() -> Path | None:
    """Return the cache folder, made if missing, or None if it cannot be a folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    folder = Path(base).expanduser() / "abcrnn"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if folder.is_dir() else None


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
