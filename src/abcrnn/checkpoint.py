"""The one place that saves and loads checkpoints.

A checkpoint is a single `.pt` file written by `torch.save` of a dict that holds only
plain Python values and tensors, so it loads with `torch.load(weights_only=True)` and
never runs pickled code:

    format_version  int, FORMAT_VERSION
    abcrnn_version  str
    model           model state dict (keys without "module." / "_orig_mod.")
    model_config    dict, ModelConfig fields
    vocabulary      dict, Vocabulary.to_dict()
    train_config    dict, TrainConfig.to_dict()
    step            int, optimizer steps completed
    best_val_loss   float or None, in nats per character
    optimizer       optimizer state dict or None
    scheduler       learning-rate scheduler state dict or None
    rng             dict of RNG states or None (python, torch, cuda, batches); a run
                    of several processes adds ranks: one such dict per rank
    corpus          dict or None: sha256 and sizes of the training and validation text
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from abcrnn import __version__
from abcrnn.atomic import atomic_path
from abcrnn.errors import AbcrnnError, CheckpointError
from abcrnn.model import CharRNN, ModelConfig

FORMAT_VERSION = 1
# The oldest format version this abcrnn reads; 1 is the first one abcrnn wrote.
OLDEST_FORMAT_VERSION = 1
PREFIXES = ("module.", "_orig_mod.")
REQUIRED_KEYS = ("model", "model_config", "vocabulary", "step")
# Type of each entry that loading relies on. "train_config" may also be None.
ENTRY_TYPES = {
    "model": dict,
    "model_config": dict,
    "vocabulary": dict,
    "step": int,
    "train_config": dict,
}


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    vocabulary: dict[str, Any],
    train_config: dict[str, Any],
    step: int,
    best_val_loss: float | None = None,
    optimizer: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
    corpus: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint of `model` (a CharRNN, maybe wrapped) to `path` atomically.

    The file is written to a temporary name in the same folder, flushed to disk, then
    renamed over `path`, so an earlier checkpoint at `path` survives a failed save.
    """
    bare = getattr(model, "_orig_mod", model)
    payload = {
        "format_version": FORMAT_VERSION,
        "abcrnn_version": __version__,
        "model": strip_prefixes(bare.state_dict()),
        "model_config": bare.config.to_dict(),
        "vocabulary": vocabulary,
        "train_config": train_config,
        "step": int(step),
        "best_val_loss": None if best_val_loss is None else float(best_val_loss),
        "optimizer": optimizer,
        "scheduler": scheduler,
        "rng": rng,
        "corpus": corpus,
    }
    _atomic_save(payload, Path(path))


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    """Write `payload` to `path` atomically; raise CheckpointError on OSError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary, open(temporary, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        kept = "the previous file is unchanged" if path.exists() else "no file written"
        raise CheckpointError(
            f"failed to save checkpoint {path}: {error.strerror or error} ({kept}); "
            f"free disk space or make {path.parent} writable, then resume the run"
        ) from error


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and check a checkpoint; tensors land on `map_location`.

    Raises CheckpointError when the file is missing, unreadable, truncated or
    corrupt, contains pickled objects, was not written by abcrnn, has entries of
    the wrong type, or has a format version that this abcrnn does not read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(_unpickling_message(path, error)) from error
    except PermissionError as error:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {error.strerror or error}; check that "
            "the file is readable"
        ) from error
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile) as error:
        # A truncated zip file raises OSError (EINVAL) from a seek past its end.
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated, corrupt or not a "
            f"PyTorch file ({_first_line(error)}); use another checkpoint, e.g. "
            f"checkpoints/best.pt or checkpoints/last.pt of the run"
        ) from error
    _check_format(payload, path)
    payload["model"] = strip_prefixes(payload["model"])
    return payload


def _unpickling_message(path: Path, error: pickle.UnpicklingError) -> str:
    """Explain why torch.load(weights_only=True) rejected a file.

    PyTorch's own message advises loading with weights_only=False, which would run
    code from the file, so only the reason after "WeightsUnpickler error:" is kept.
    """
    text = str(error)
    reason = text.partition("WeightsUnpickler error:")[2].strip()
    reason = reason.splitlines()[0].split(". ")[0] if reason else _first_line(error)
    if reason.startswith("Unsupported global"):
        return (
            f"cannot read checkpoint {path}: it contains a pickled Python object "
            f"({reason}), and abcrnn loads only tensors and plain values so that no "
            "code from the file runs; use a checkpoint written by `abcrnn train`"
        )
    return (
        f"cannot read checkpoint {path}: the file is truncated, corrupt or not a "
        f"PyTorch file ({reason}); use another checkpoint, e.g. checkpoints/best.pt "
        "or checkpoints/last.pt of the run"
    )


def _check_format(payload: Any, path: Path) -> None:
    if not isinstance(payload, dict) or "format_version" not in payload:
        found = "a state dict of weights only" if _is_state_dict(payload) else "it"
        raise CheckpointError(
            f"{path} is not an abcrnn checkpoint (no format_version; {found} lacks the "
            f"model settings and vocabulary); use a file written by `abcrnn train`"
        )
    _check_version(payload["format_version"], payload, path)
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks the entries {', '.join(missing)}")
    problems = _entry_problems(payload)
    if problems:
        raise CheckpointError(
            f"{path} is damaged: {'; '.join(problems)}; use another checkpoint, e.g. "
            "checkpoints/best.pt or checkpoints/last.pt of the run"
        )


def _check_version(version: Any, payload: dict, path: Path) -> None:
    """Raise CheckpointError unless `version` is a format version this abcrnn reads."""
    is_int = type(version) is int  # not bool, which is an int subclass
    if is_int and OLDEST_FORMAT_VERSION <= version <= FORMAT_VERSION:
        return
    readable = (
        f"this abcrnn {__version__} reads format versions {OLDEST_FORMAT_VERSION} "
        f"to {FORMAT_VERSION}"
    )
    if is_int and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, written by abcrnn "
            f"{payload.get('abcrnn_version', '?')}; {readable}: upgrade abcrnn"
        )
    raise CheckpointError(
        f"{path} has checkpoint format version {version!r}, which no abcrnn release "
        f"wrote; {readable}. Use a checkpoint written by `abcrnn train`"
    )


def _entry_problems(payload: dict) -> list[str]:
    """Return what is wrong with the entries that loading relies on."""
    from abcrnn.vocabulary import Vocabulary

    problems = []
    for key, kind in ENTRY_TYPES.items():
        value = payload.get(key)
        if key == "train_config" and value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            problems.append(f"{key} is a {type(value).__name__}, not a {kind.__name__}")
    if problems:
        return problems
    if payload["step"] < 0:
        problems.append(f"step is {payload['step']}, below 0")
    if not all(isinstance(value, torch.Tensor) for value in payload["model"].values()):
        problems.append("model contains values that are not tensors")
    try:
        Vocabulary.from_dict(payload["vocabulary"])
    except AbcrnnError as error:
        problems.append(f"vocabulary is invalid ({error})")
    return problems


def _is_state_dict(payload: Any) -> bool:
    return isinstance(payload, dict) and all(
        isinstance(value, torch.Tensor) for value in payload.values()
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def strip_prefixes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Return `state_dict` with a leading "module." or "_orig_mod." cut from keys.

    Those prefixes come from DataParallel / DistributedDataParallel and from
    torch.compile wrappers.
    """
    cleaned = {}
    for key, value in state_dict.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    return cleaned


def check_model_config(saved: dict[str, Any], expected: ModelConfig) -> None:
    """Raise CheckpointError naming each field where `saved` differs from `expected`."""
    requested = expected.to_dict()
    differences = [
        f"{name} is {saved.get(name)!r} in the checkpoint but {value!r} here"
        for name, value in requested.items()
        if saved.get(name) != value
    ]
    if differences:
        raise CheckpointError(
            "the checkpoint does not fit the requested model: "
            + "; ".join(differences)
            + ". Drop the conflicting settings or start a new run"
        )


def build_model(payload: dict[str, Any]) -> CharRNN:
    """Build a CharRNN from a loaded checkpoint and copy its weights in."""
    try:
        config = ModelConfig.from_dict(payload["model_config"])
    except TypeError as error:
        raise CheckpointError(
            f"the checkpoint's model settings are invalid: {error}"
        ) from error
    model = CharRNN(config)
    load_weights(model, payload["model"])
    return model


def load_weights(model: CharRNN, state_dict: dict[str, Any]) -> None:
    """Copy `state_dict` into `model`, raising CheckpointError on any mismatch.

    The message names the model settings that differ (e.g. num_layers), judged
    from the shapes of the saved weights, and the weights that do not fit.
    """
    state_dict = strip_prefixes(state_dict)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        details = _weight_mismatches(model, state_dict) or [_first_line(error)]
        raise CheckpointError(
            "the checkpoint's weights do not fit the model: "
            + "; ".join(details)
            + ". Build the model from the checkpoint's model_config "
            "(abcrnn.checkpoint.build_model) instead"
        ) from error


def _weight_mismatches(model: CharRNN, state_dict: dict[str, Any]) -> list[str]:
    """List the settings that differ, else the missing, extra and misshapen weights."""
    saved = _shape_settings(state_dict)
    details = [
        f"{name} is {value} in the checkpoint but {getattr(model.config, name)} in "
        "the model"
        for name, value in saved.items()
        if value != getattr(model.config, name)
    ]
    if details:
        return details
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing:
        details.append(f"missing weights {', '.join(missing[:4])}")
    if unexpected:
        details.append(f"unexpected weights {', '.join(unexpected[:4])}")
    for name in sorted(set(expected) & set(state_dict)):
        have, want = tuple(state_dict[name].shape), tuple(expected[name].shape)
        if have != want:
            details.append(f"{name} has shape {have} in the checkpoint, {want} here")
    return details


def _shape_settings(state_dict: dict[str, Any]) -> dict[str, int]:
    """Read vocab_size, embedding_dim, hidden_size and num_layers off weight shapes."""
    settings = {}
    embedding = state_dict.get("embedding.weight")
    if isinstance(embedding, torch.Tensor) and embedding.dim() == 2:
        settings["vocab_size"], settings["embedding_dim"] = embedding.shape
    recurrent = state_dict.get("rnn.weight_hh_l0")
    if isinstance(recurrent, torch.Tensor) and recurrent.dim() == 2:
        settings["hidden_size"] = recurrent.shape[1]
    layers = {key for key in state_dict if key.startswith("rnn.weight_hh_l")}
    if layers:
        settings["num_layers"] = len(layers)
    return {name: int(value) for name, value in settings.items()}


def find_checkpoint(source: Path) -> Path:
    """Return the checkpoint for a run folder (best.pt, else last.pt) or a .pt path."""
    source = Path(source)
    if source.is_dir():
        for name in ("best.pt", "last.pt"):
            candidate = source / "checkpoints" / name
            if candidate.is_file():
                return candidate
        raise CheckpointError(
            f"no checkpoint in {source}: expected checkpoints/best.pt or "
            "checkpoints/last.pt; pass a run folder made by `abcrnn train` or a "
            ".pt file"
        )
    if not source.exists():
        raise CheckpointError(f"checkpoint or run folder not found: {source}")
    return source


def load_for_sampling(
    source: Path, device: str | torch.device = "cpu"
) -> tuple[CharRNN, Any, dict[str, Any]]:
    """Load a model for generation from a run folder or a checkpoint file.

    Returns (model in eval mode on `device`, Vocabulary, info) where info contains the
    checkpoint path, step, best_val_loss and train_config.
    """
    from abcrnn.vocabulary import Vocabulary

    path = find_checkpoint(Path(source))
    payload = load_checkpoint(path, map_location="cpu")
    model = build_model(payload).to(device).eval()
    vocabulary = Vocabulary.from_dict(payload["vocabulary"])
    if len(vocabulary) != model.config.vocab_size:
        raise CheckpointError(
            f"{path} is inconsistent: {len(vocabulary)} characters in the vocabulary "
            f"but vocab_size {model.config.vocab_size} in the model settings"
        )
    info = {
        "path": path,
        "step": payload["step"],
        "best_val_loss": payload.get("best_val_loss"),
        "train_config": payload.get("train_config"),
    }
    return model, vocabulary, info
