"""Find trained runs inside the runs folder and keep their models loaded.

Every path the server reads is resolved first and must lie inside the runs folder, so
a run name, or a symbolic link inside a run, cannot reach other files.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abcrnn.errors import AbcrnnError
from abcrnn.web.schemas import RUN_NAME_PATTERN

# Checkpoints inside run_dir/checkpoints, in the order abcrnn.checkpoint picks them.
CHECKPOINT_NAMES = ("best.pt", "last.pt")


class RunNotFoundError(AbcrnnError, LookupError):
    """A run name matches no trained run inside the runs folder."""


@dataclass(frozen=True)
class RunEntry:
    """A run folder and the checkpoint that sampling would load from it."""

    name: str
    run_dir: Path
    checkpoint: Path
    modified: float


@dataclass(frozen=True)
class LoadedRun:
    """A model ready for sampling, with its vocabulary and checkpoint details."""

    entry: RunEntry
    model: Any
    vocab: Any
    info: dict[str, Any]

    @property
    def step(self) -> int | None:
        """Return the training step stored in the checkpoint, if any."""
        step = self.info.get("step")
        return int(step) if isinstance(step, int) else None


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def find_checkpoint(run_dir: Path, root: Path) -> Path | None:
    """Return the resolved best (else last) checkpoint of `run_dir` inside `root`."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    for name in CHECKPOINT_NAMES:
        candidate = (folder / name).resolve()
        if candidate.is_file() and _inside(candidate, root):
            return candidate
    return None


def resolve_run(runs_dir: Path, name: str) -> RunEntry:
    """Return the run called `name`, or raise RunNotFoundError naming the problem."""
    if not re.fullmatch(RUN_NAME_PATTERN, name):
        raise RunNotFoundError(
            f"invalid run name {name!r}: use the name of a folder inside the "
            "runs folder"
        )
    root = runs_dir.resolve()
    run_dir = (root / name).resolve()
    if run_dir == root or not _inside(run_dir, root):
        raise RunNotFoundError(f"run {name!r} points outside the runs folder")
    checkpoint = find_checkpoint(run_dir, root) if run_dir.is_dir() else None
    if checkpoint is None:
        raise RunNotFoundError(
            f"run {name!r} was not found or has no checkpoint in {runs_dir}: "
            "train one with `abcrnn train` or pick another run"
        )
    return RunEntry(name, run_dir, checkpoint, checkpoint.stat().st_mtime)


def list_runs(runs_dir: Path) -> list[RunEntry]:
    """List the trained runs in `runs_dir`, newest checkpoint first."""
    if not runs_dir.is_dir():
        return []
    entries = []
    for child in runs_dir.iterdir():
        try:
            entries.append(resolve_run(runs_dir, child.name))
        except RunNotFoundError:
            continue
    return sorted(entries, key=lambda entry: (-entry.modified, entry.name))


class ModelCache:
    """Load each run's model once and share it between requests (thread-safe).

    A run whose checkpoint changed on disk since it was loaded is loaded again.
    """

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self._loaded: dict[str, LoadedRun] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, name: str) -> LoadedRun:
        """Return the loaded run `name`, loading it on first use."""
        entry = resolve_run(self.runs_dir, name)
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        # One lock per run: two requests for a new run load it once, and requests
        # for other runs are not held up meanwhile.
        with lock:
            loaded = self._loaded.get(name)
            if loaded is None or loaded.entry != entry:
                loaded = _load(entry)
                self._loaded[name] = loaded
        return loaded


def _load(entry: RunEntry) -> LoadedRun:
    from abcrnn.checkpoint import load_for_sampling

    model, vocab, info = load_for_sampling(entry.checkpoint)
    model.eval()
    return LoadedRun(entry, model, vocab, dict(info))
