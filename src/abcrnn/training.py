"""The training loop: random windows of the corpus in, checkpoints and metrics out.

`train` reads the corpus, builds the model and optimizer (or restores them from
run_dir/checkpoints/last.pt), then repeats one optimizer step on a batch of random
windows. Between steps it validates, calls the callbacks, logs and saves, each at
its own interval. Layout of a run folder:

    run_dir/config.json           resolved settings, versions, corpus fingerprint
    run_dir/metrics.csv           one row per logged step
    run_dir/loss.png              training and validation loss
    run_dir/checkpoints/last.pt   everything needed to resume exactly
    run_dir/checkpoints/best.pt   the lowest validation loss so far
    run_dir/tb/                   TensorBoard event files
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm import tqdm

from abcrnn.checkpoint import check_model_config, load_checkpoint
from abcrnn.config import TrainConfig
from abcrnn.devices import autocast
from abcrnn.distributed import (
    Ranks,
    check_same_step,
    process_group,
    rank_rng_state,
    rank_seed,
)
from abcrnn.errors import TrainingError
from abcrnn.model import CharRNN
from abcrnn.run_setup import RunData, model_config, open_run
from abcrnn.tracking import bits_per_char
from abcrnn.vocabulary import Vocabulary

log = logging.getLogger(__name__)

# A callback receives (step, model, vocabulary, metrics of this step) with the model
# in eval mode. It may return a dict: numbers are logged as metrics, strings as
# texts, and Path values as WAV audio.
Callback = Callable[[int, CharRNN, Vocabulary, dict[str, float]], dict | None]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one `train` call; losses are in nats per character."""

    run_dir: Path
    status: str  # "finished", "interrupted" or "nothing to do"
    step: int
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    seconds: float = 0.0


def train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> TrainResult:
    """Train a model with `config`, writing checkpoints and metrics to `run_dir`.

    With `resume`, continue from run_dir/checkpoints/last.pt: weights, optimizer,
    schedule, step, best loss and every random state come back, so the result
    equals an uninterrupted run (bit for bit on CPU). A finished run returns status
    "nothing to do" and leaves its files alone. SIGINT and SIGTERM end training
    after the current step, with last.pt saved (status "interrupted").

    Raises TrainingError when the loss becomes NaN or infinite; the last checkpoint
    written before that stays as it was.

    Started by torchrun (WORLD_SIZE > 1), each process trains one rank of a
    DistributedDataParallel run, and only rank 0 writes files, shows `progress`
    and runs `callbacks`; see `abcrnn.distributed`.
    """
    with process_group(config.device) as ranks:
        return _train(config, Path(run_dir), resume, callbacks, progress, ranks)


def _train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    callbacks: Sequence[Callback],
    progress: bool,
    ranks: Ranks,
) -> TrainResult:
    """Run `train` on one rank of `ranks` (a single process included)."""
    checkpoint = _read_last_checkpoint(run_dir) if resume else None
    saved_step = checkpoint["step"] if checkpoint is not None else None
    check_same_step(saved_step, ranks, run_dir / "checkpoints" / "last.pt")
    if checkpoint is not None and checkpoint["step"] >= config.steps:
        log.debug(
            "nothing to do: %s is at step %d of %d",
            run_dir,
            checkpoint["step"],
            config.steps,
        )
        return TrainResult(
            run_dir, "nothing to do", checkpoint["step"], checkpoint["best_val_loss"]
        )

    if checkpoint is not None:
        vocab_size = len(checkpoint["vocabulary"]["chars"])
        check_model_config(checkpoint["model_config"], model_config(config, vocab_size))

    run = open_run(config, run_dir, checkpoint, ranks)
    started = time.perf_counter()
    bar = tqdm(
        total=config.steps, disable=not (progress and ranks.is_main), unit="step"
    )
    with _stop_requests() as stop, bar:
        try:
            if checkpoint is not None:
                _restore(run, checkpoint)
                bar.update(run.step)
            if ranks.is_main:
                run.write_config_json()
            status = _steps(run, callbacks, stop, bar)
        finally:
            run.tracker.close(run.final_metrics())
    seconds = time.perf_counter() - started
    return TrainResult(
        run_dir, status, run.step, run.best_val_loss, run.last_val_loss, seconds
    )


def _read_last_checkpoint(run_dir: Path) -> dict[str, Any]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


def _steps(
    run: RunData, callbacks: Sequence[Callback], stop: _StopRequest, bar: tqdm
) -> str:
    """Train from run.step to config.steps; return "finished" or "interrupted"."""
    config, model = run.config, run.training_model
    global_batch_size = config.batch_size * run.ranks.world_size
    meter = _LossMeter(run.device, global_batch_size * config.seq_len, run.ranks)
    model.train()
    for step in range(run.step + 1, config.steps + 1):
        # Forward and backward pass on one batch of random windows.
        x, y = run.windows.next_batch()  # (B, T) each
        with autocast(run.device, run.bf16):
            logits, _ = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        lr = run.current_lr()  # the rate of this step, before the schedule moves on
        run.optimizer.step()
        run.scheduler.step()
        run.step = step
        meter.add(loss)  # stays on the device: no sync here
        bar.update()

        # Logging, validation and callbacks, each at its own interval.
        last = step == config.steps
        metrics: dict[str, float] = {}
        if _due(step, config.log_every) or _due(step, config.eval_every) or last:
            metrics |= meter.read(step, lr)
            bar.set_postfix(
                loss=f"{metrics['train_loss']:.3f}",
                char_per_s=f"{metrics['tokens_per_s']:,.0f}",
                refresh=False,
            )
        paused = time.perf_counter()
        if (_due(step, config.eval_every) or last) and run.valid_batches:
            metrics |= _validate(run)
        if _due(step, config.sample_every) and callbacks and run.ranks.is_main:
            metrics |= _run_callbacks(run, callbacks, metrics)
        if metrics:
            run.tracker.log_metrics(step, metrics)
        meter.exclude(time.perf_counter() - paused)

        # Checkpoints: last.pt at its interval, at the end and when stopping. With
        # several processes, a signal that reached any rank stops them all here,
        # and the char/s figure counts the time of that agreement.
        stopping = run.ranks.any(stop.signal_name is not None)
        paused = time.perf_counter()
        if _due(step, config.checkpoint_every) or last or stopping:
            meter.check_finite(step, run.last_path)
            run.save(run.last_path)
        meter.exclude(time.perf_counter() - paused)
        if stopping and not last:
            signal_name = stop.signal_name or "a stop signal on another rank"
            log.info("%s received: stopped after step %d", signal_name, step)
            return "interrupted"
    return "finished"


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def _validate(run: RunData) -> dict[str, float]:
    """Return val_loss and val_bpc, and save best.pt when the loss improved."""
    val_loss = evaluate(run.model, run.valid_batches, run.device, run.bf16, run.ranks)
    if not math.isfinite(val_loss):
        raise TrainingError(
            f"validation loss is {val_loss} at step {run.step}: training diverged. "
            f"{run.last_path} keeps the last good state; lower --lr or set --grad-clip"
        )
    run.last_val_loss = val_loss
    if run.best_val_loss is None or val_loss < run.best_val_loss:
        run.best_val_loss = val_loss
        run.save(run.best_path)
    return {"val_loss": val_loss, "val_bpc": bits_per_char(val_loss)}


def evaluate(
    model: CharRNN,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    bf16: bool = False,
    ranks: Ranks | None = None,
) -> float:
    """Return the mean cross-entropy in nats per character over (x, y) batches.

    With `ranks` of several processes, each rank scores its shard of `batches` and
    the sums are added across ranks, so every rank returns the same mean.
    """
    ranks = ranks or Ranks()
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    count = 0
    with torch.inference_mode(), autocast(device, bf16):
        for x, y in ranks.shard(batches):
            logits, _ = model(x)  # (B, T, V)
            flat = logits.float().flatten(0, 1)
            total += F.cross_entropy(flat, y.flatten(), reduction="sum")
            count += y.numel()
    model.train(was_training)
    if ranks.distributed:
        total = ranks.sum(total)
        count = int(ranks.sum(torch.tensor(count, device=device)).item())
    return total.item() / max(count, 1)


def _run_callbacks(
    run: RunData, callbacks: Sequence[Callback], metrics: dict[str, float]
) -> dict[str, float]:
    """Call each callback with the model in eval mode; return the numbers they gave."""
    numbers: dict[str, float] = {}
    run.model.eval()
    for callback in callbacks:
        returned = callback(run.step, run.model, run.vocabulary, dict(metrics)) or {}
        for name, value in returned.items():
            if isinstance(value, str):
                run.tracker.log_text(run.step, name, value)
            elif isinstance(value, Path):
                run.tracker.log_audio(run.step, name, value)
            else:
                numbers[name] = float(value)
    run.model.train()
    return numbers


@dataclass
class _LossMeter:
    """Sum losses on the device and turn them into averages and speed when read.

    With several processes, reads average the losses of all ranks, and
    tokens_per_step counts the global batch.
    """

    device: torch.device
    tokens_per_step: int
    ranks: Ranks = field(default_factory=Ranks)
    total: torch.Tensor = field(init=False)
    steps: int = 0
    clock: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.total = torch.zeros((), device=self.device)

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach()
        self.steps += 1

    def read(self, step: int, lr: float) -> dict[str, float]:
        """Return the mean training loss and char/s since the last read, then reset."""
        # .item() waits for the device, and ranks.mean for the other ranks.
        mean = self.ranks.mean(self.total).item() / max(self.steps, 1)
        seconds = max(time.perf_counter() - self.clock, 1e-9)
        self._raise_if_not_finite(mean, step)
        metrics = {
            "train_loss": mean,
            "tokens_per_s": self.steps * self.tokens_per_step / seconds,
            "lr": lr,
        }
        self.total.zero_()
        self.steps = 0
        self.clock = time.perf_counter()
        return metrics

    def check_finite(self, step: int, last_path: Path) -> None:
        """Raise TrainingError if a loss since the last read was NaN or infinite."""
        self._raise_if_not_finite(self.ranks.mean(self.total).item(), step, last_path)

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` (validating, sampling, saving) out of the char/s figure."""
        self.clock += seconds

    def _raise_if_not_finite(
        self, value: float, step: int, last_path: Path | None = None
    ) -> None:
        if math.isfinite(value):
            return
        kept = f"{last_path} keeps the last good state. " if last_path else ""
        raise TrainingError(
            f"training loss became {value} by step {step}: the model diverged. "
            f"{kept}Lower --lr or set --grad-clip (e.g. 1.0), then train again"
        )


def _restore(run: RunData, checkpoint: dict[str, Any]) -> None:
    """Load weights, optimizer, schedule, counters and random states."""
    run.model.load_state_dict(checkpoint["model"])
    if checkpoint.get("optimizer") is not None:
        run.optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint.get("scheduler") is not None:
        run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.step = checkpoint["step"]
    run.best_val_loss = checkpoint.get("best_val_loss")
    rng = rank_rng_state(checkpoint.get("rng"), run.ranks, run.step)
    if rng is None:
        # A rank that the checkpoint has no states for: fresh windows and dropout.
        seed = rank_seed(run.config.seed, run.ranks, run.step)
        run.windows.generator.manual_seed(seed)
        torch.manual_seed(seed)
        rng = {}
    if "python" in rng:
        random.setstate(rng["python"])
    if "torch" in rng:
        torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, IndexError):
            torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
    if "batches" in rng:
        _restore_batch_generator(run, rng["batches"])

    absent = [key for key in ("optimizer", "scheduler") if checkpoint.get(key) is None]
    if absent:
        log.warning(
            "the checkpoint has no %s state, so it starts afresh at step %d and the "
            "run differs from an uninterrupted one",
            " or ".join(absent),
            run.step,
        )
    log.info("resumed %s at step %d", run.run_dir, run.step)


def _restore_batch_generator(run: RunData, state: torch.Tensor) -> None:
    try:
        run.windows.load_state_dict({"generator": state})
    except RuntimeError:
        # CPU and CUDA generators keep states of different sizes.
        run.windows.generator.manual_seed(
            rank_seed(run.config.seed, run.ranks, run.step)
        )
        log.warning(
            "the checkpoint was written on another kind of device, so the batch "
            "order after step %d differs from an uninterrupted run",
            run.step,
        )


@dataclass
class _StopRequest:
    """Name of the first stop signal received, or None."""

    signal_name: str | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.signal_name = signal.Signals(signum).name
        # A second Ctrl-C or SIGTERM acts at once, in the usual way.
        default = signal.default_int_handler if signum == signal.SIGINT else None
        signal.signal(signum, default or signal.SIG_DFL)


@contextlib.contextmanager
def _stop_requests() -> Iterator[_StopRequest]:
    """Catch SIGINT and SIGTERM while training, on the main thread only."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signals}
    for signum in signals:
        signal.signal(signum, stop)
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
