"""Everything a training run holds: data on the device, model, optimizer, sinks.

`open_run` builds it from a TrainConfig (and, on resume, the vocabulary of the
checkpoint); the training loop in `training.py` then only steps and saves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from abcrnn import __version__, cell_kernels
from abcrnn.atomic import write_text_atomic
from abcrnn.batches import RandomWindows, validation_batches
from abcrnn.checkpoint import save_checkpoint
from abcrnn.config import TrainConfig
from abcrnn.corpus import CorpusOptions, join_tunes, load_corpus, split_corpus
from abcrnn.devices import (
    keep_freed_memory,
    resolve_bf16,
    resolve_device,
    set_threads,
)
from abcrnn.distributed import (
    Ranks,
    gather_rng_states,
    rank_device,
    rank_seed,
    wrap_model,
)
from abcrnn.errors import TrainingError, VocabularyError
from abcrnn.model import CharRNN, ModelConfig
from abcrnn.tracking import Tracker, bits_per_char, open_tracker
from abcrnn.vocabulary import Vocabulary

log = logging.getLogger(__name__)

# The train/validation split always uses this seed, so runs that differ only in
# --seed are scored on the same validation tunes.
SPLIT_SEED = 0


@dataclass
class CorpusTexts:
    """The training and validation text and a fingerprint of both."""

    train_text: str
    valid_text: str
    fingerprint: dict[str, Any]


@dataclass
class RunData:
    """The state of one training run, shared by the loop and its helpers."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    bf16: bool
    vocabulary: Vocabulary
    corpus: CorpusTexts
    model: CharRNN
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    windows: RandomWindows
    valid_batches: list[tuple[torch.Tensor, torch.Tensor]]
    tracker: Tracker
    step: int = 0
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    ranks: Ranks = field(default_factory=Ranks)
    # The module the training step calls: `model` in DistributedDataParallel when
    # several processes train, else `model` itself.
    training_model: torch.nn.Module | None = None
    checkpoints: Path = field(init=False)

    def __post_init__(self) -> None:
        self.checkpoints = self.run_dir / "checkpoints"
        if self.training_model is None:
            self.training_model = self.model

    @property
    def last_path(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.checkpoints / "best.pt"

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def save(self, path: Path) -> None:
        """Write a checkpoint of the whole run state; refuse non-finite weights.

        With several processes every rank calls this, because the random states of
        all ranks are gathered. Only rank 0 writes the file, and every rank returns
        once it is written, or raises when rank 0 failed to write it.
        """
        for name, parameter in self.model.named_parameters():
            if not torch.isfinite(parameter).all():
                raise TrainingError(
                    f"weight {name} contains NaN or infinite values after step "
                    f"{self.step}: training diverged, so {path} was not overwritten. "
                    "Lower --lr or set --grad-clip (e.g. 1.0), then train again"
                )
        rng = gather_rng_states(self.rng_state(), self.ranks)
        error: Exception | None = None
        if self.ranks.is_main:
            try:
                self._write_checkpoint(path, rng)
            except Exception as caught:  # re-raised below, after all ranks learn of it
                error = caught
        if self.ranks.any(error is not None):
            if error is not None:
                raise error
            raise TrainingError(
                f"rank 0 failed to write {path}, so rank {self.ranks.rank} stops "
                "too; rank 0's output names the error"
            )

    def _write_checkpoint(self, path: Path, rng: dict[str, Any] | None) -> None:
        save_checkpoint(
            path,
            model=self.model,
            vocabulary=self.vocabulary.to_dict(),
            train_config=self.config.to_dict(),
            step=self.step,
            best_val_loss=self.best_val_loss,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=rng,
            corpus=self.corpus.fingerprint,
        )

    def rng_state(self) -> dict[str, Any]:
        """Return every random state that the next steps depend on."""
        state = {
            "python": random.getstate(),
            "torch": torch.get_rng_state(),
            "batches": self.windows.state_dict()["generator"],
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def final_metrics(self) -> dict[str, float]:
        """Return the best validation loss and bits/char, when there was validation."""
        if self.best_val_loss is None:
            return {}
        return {
            "best_val_loss": self.best_val_loss,
            "best_val_bpc": bits_per_char(self.best_val_loss),
        }

    def write_config_json(self) -> Path:
        """Write run_dir/config.json: resolved settings, versions and the corpus."""
        info = {
            "train_config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
            "device": str(self.device),
            "bf16": self.bf16,
            # The fused C step and PyTorch's ops round differently in the last bits.
            "fused_lstm_step": self.device.type == "cpu"
            and self.bf16
            and cell_kernels.kernels() is not None,
            "world_size": self.ranks.world_size,
            "global_batch_size": self.config.batch_size * self.ranks.world_size,
            "versions": {
                "abcrnn": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "corpus": self.corpus.fingerprint,
        }
        text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
        return write_text_atomic(self.run_dir / "config.json", text)


def open_run(
    config: TrainConfig,
    run_dir: Path,
    checkpoint: dict[str, Any] | None = None,
    ranks: Ranks | None = None,
) -> RunData:
    """Build the run state for `config`; use the checkpoint's vocabulary if given.

    With `ranks` of several processes, the windows come from seed + rank, the model
    is wrapped in DistributedDataParallel, and only rank 0 creates the run folder
    and its metric sinks.
    """
    ranks = ranks or Ranks()
    set_threads(config.threads)
    device = rank_device(resolve_device(config.device), ranks)
    if device.type == "cpu":
        keep_freed_memory()
    bf16 = resolve_bf16(config.bf16, device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    corpus = load_texts(config)
    if checkpoint is not None:
        vocabulary = Vocabulary.from_dict(checkpoint["vocabulary"])
        _warn_if_corpus_changed(checkpoint.get("corpus"), corpus.fingerprint)
        _check_corpus_fits(vocabulary, corpus)
    else:
        vocabulary = Vocabulary.from_text(corpus.train_text + corpus.valid_text)
    train_ids = _to_tensor(vocabulary, corpus.train_text, device)
    valid_ids = _to_tensor(vocabulary, corpus.valid_text, device)

    model = CharRNN(model_config(config, len(vocabulary))).to(device)
    if ranks.distributed:
        torch.manual_seed(rank_seed(config.seed, ranks))  # dropout masks per rank
    optimizer = build_optimizer(model, config)
    windows = RandomWindows(
        train_ids, config.seq_len, config.batch_size, rank_seed(config.seed, ranks)
    )
    valid = validation_batches(
        valid_ids, config.seq_len, config.batch_size, config.eval_batches
    )
    resume_step = checkpoint["step"] if checkpoint is not None else 0
    tracker = Tracker([])
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tracker = open_tracker(
            run_dir, config.steps, resume_step, config.tensorboard, config.tracker
        )
        tracker.log_params(config.to_dict())
    log.info(
        "device %s%s, %d parameters, %s training and %s validation characters",
        device,
        " with bfloat16 autocast" if bf16 else "",
        sum(parameter.numel() for parameter in model.parameters()),
        f"{len(corpus.train_text):,}",
        f"{len(corpus.valid_text):,}",
    )
    if ranks.distributed:
        log.info(
            "%d processes (%s): batch size %d per rank, global batch %d windows",
            ranks.world_size,
            ranks.backend,
            config.batch_size,
            config.batch_size * ranks.world_size,
        )
    return RunData(
        config=config,
        run_dir=run_dir,
        device=device,
        bf16=bf16,
        vocabulary=vocabulary,
        corpus=corpus,
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config),
        windows=windows,
        valid_batches=list(valid),
        tracker=tracker,
        ranks=ranks,
        training_model=wrap_model(model, ranks, device),
    )


def model_config(config: TrainConfig, vocab_size: int) -> ModelConfig:
    """Return the ModelConfig that `config` describes for a vocabulary size."""
    return ModelConfig(
        vocab_size=vocab_size,
        embedding_dim=config.embedding_dim,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout,
        cell=config.cell,
    )


def load_texts(config: TrainConfig) -> CorpusTexts:
    """Read the corpus and split it into training and validation text.

    With valid_fraction 0, or a corpus of one tune, all text is for training and
    validation is skipped (with a warning in the second case).
    """
    options = CorpusOptions(
        normalise=config.normalise,
        drop_titles=config.drop_titles,
        drop_chords=config.drop_chords,
        drop_decorations=config.drop_decorations,
        deduplicate=config.deduplicate,
    )
    corpus = load_corpus(config.corpus, options)
    for warning in corpus.report.warnings[:5]:
        log.warning("%s", warning)
    tunes, valid_tunes = corpus.tunes, []
    if config.valid_fraction > 0 and len(tunes) < 2:
        log.warning("the corpus has 1 tune, so training runs without validation")
    elif config.valid_fraction > 0:
        tunes, valid_tunes = split_corpus(tunes, config.valid_fraction, SPLIT_SEED)
    train_text = join_tunes(tunes)
    valid_text = join_tunes(valid_tunes) if valid_tunes else ""
    digest = hashlib.sha256(f"{train_text}\0{valid_text}".encode()).hexdigest()
    fingerprint = {
        "sha256": digest,
        "sources": list(config.corpus),
        "train_tunes": len(tunes),
        "valid_tunes": len(valid_tunes),
        "train_chars": len(train_text),
        "valid_chars": len(valid_text),
    }
    return CorpusTexts(train_text, valid_text, fingerprint)


def _to_tensor(vocabulary: Vocabulary, text: str, device: torch.device):
    return torch.tensor(vocabulary.encode(text), dtype=torch.long, device=device)


def _warn_if_corpus_changed(saved: dict | None, current: dict) -> None:
    if saved and saved.get("sha256") != current["sha256"]:
        log.warning(
            "the corpus differs from the one this run started with, so the resumed "
            "run will not match an uninterrupted one"
        )


def _check_corpus_fits(vocabulary: Vocabulary, corpus: CorpusTexts) -> None:
    """Raise VocabularyError when the corpus has characters the checkpoint lacks."""
    unknown = vocabulary.unknown(corpus.train_text + corpus.valid_text)
    if unknown:
        listed = ", ".join(repr(char) for char in unknown)
        raise VocabularyError(
            f"the corpus contains {len(unknown)} character(s) that the checkpoint's "
            f"vocabulary lacks: {listed}. A resumed run keeps its vocabulary, so "
            "resume with the corpus the run started with, or start a new run"
        )


def build_optimizer(model: torch.nn.Module, config: TrainConfig):
    """Return the optimizer named by config.optimizer with lr and weight_decay.

    Adam and AdamW use PyTorch's fused kernels, which update all parameters in one
    pass: measured on 2 CPU cores, a step over two 4096 x 1024 tensors took 4.4 ms
    fused against 16 ms unfused.
    """
    params = model.parameters()
    options = {"lr": config.lr, "weight_decay": config.weight_decay}
    if config.optimizer == "adam":
        return torch.optim.Adam(params, fused=True, **options)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, fused=True, **options)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, **options)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, **options)
    return torch.optim.SGD(params, momentum=0.9, **options)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """Return a LambdaLR that applies `lr_factor` before each optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda index: lr_factor(index, config)
    )


def lr_factor(index: int, config: TrainConfig) -> float:
    """Return the multiple of config.lr used for step `index + 1`.

    Linear warm-up over warmup_steps, then "constant", "cosine" or "linear" decay
    that reaches min_lr at the last step.
    """
    if index < config.warmup_steps:
        return (index + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    decay_steps = max(config.steps - config.warmup_steps - 1, 1)
    progress = min((index - config.warmup_steps) / decay_steps, 1.0)
    floor = config.min_lr / config.lr
    if config.lr_schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (1 - floor) * (1 - progress)
