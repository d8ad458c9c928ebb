"""The two contenders behind one set of calls: the lab's code and abcrnn.

`LabSide` drives `lab_reference` step by step. `AbcrnnSide` runs abcrnn's own
training loop (`abcrnn.training.train`) and sampler (`abcrnn.sampling`), and reads
its measurements through training callbacks, so what is timed is abcrnn's real code.
Both score models with `workload.validation_loss` on the same validation text.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import lab_reference as lab
import numpy as np
import torch
from measure import time_call
from workload import Workload, encode, validation_loss

from abcrnn.checkpoint import load_for_sampling
from abcrnn.config import TrainConfig, resolve_config
from abcrnn.corpus import join_tunes
from abcrnn.model import CharRNN
from abcrnn.run_setup import load_texts
from abcrnn.sampling import SampleConfig, default_prime, generate_tunes
from abcrnn.training import train
from abcrnn.vocabulary import Vocabulary

log = logging.getLogger(__name__)

# Validation windows are this long on both sides (the lab's seq_length).
VALID_SEQ_LEN = 100


class LabSide:
    """The lab's pipeline on a workload: its vocabulary, batches, model and sampler."""

    def __init__(
        self, workload: Workload, settings: lab.LabSettings, device: torch.device
    ) -> None:
        self.settings = settings
        self.device = device
        all_text = workload.lab_train_text + workload.valid_text
        self.char2idx, self.idx2char = lab.build_vocabulary(all_text)
        self.vectorized = lab.vectorize_string(workload.lab_train_text, self.char2idx)
        self.valid_ids = encode(workload.valid_text, workload.chars, device)

    def new_trainer(self, seed: int = 0) -> lab.LabTrainer:
        """Return a fresh model and optimizer, with numpy and torch seeded."""
        np.random.seed(seed)
        torch.manual_seed(seed)
        return lab.LabTrainer(len(self.char2idx), self.settings, self.device)

    def run_steps(self, trainer: lab.LabTrainer, steps: int) -> float:
        """Run `steps` lab loop iterations and return their wall time in seconds."""
        return time_call(
            lambda: [trainer.run_iteration(self.vectorized) for _ in range(steps)],
            self.device,
        )

    def val_loss(self, model: lab.LSTMModel) -> float:
        """Return the model's validation loss in nats per character."""
        return validation_loss(model, self.valid_ids, VALID_SEQ_LEN)

    def train_curve(self, eval_every: int) -> tuple[list[dict[str, float]], float]:
        """Run the lab's full training once; return its validation curve and seconds.

        Each point has the step, the validation loss and the training seconds up
        to that step. Validation time is not counted as training time.
        """
        trainer = self.new_trainer()
        curve: list[dict[str, float]] = []
        seconds = 0.0
        total = self.settings.num_training_iterations
        for step in range(1, total + 1):
            seconds += self.run_steps(trainer, 1)
            if step % eval_every == 0 or step == total:
                loss = self.val_loss(trainer.model)
                curve.append({"step": step, "val_loss": loss, "train_seconds": seconds})
                log.info("lab step %d/%d: val loss %.4f", step, total, loss)
        return curve, seconds

    def model_from(self, model: CharRNN) -> lab.LSTMModel:
        """Return an LSTMModel holding the weights of a one-layer LSTM CharRNN."""
        config = model.config
        copy = lab.LSTMModel(
            config.vocab_size, config.embedding_dim, config.hidden_size
        )
        weights = {
            key.replace("rnn.", "lstm.", 1).replace("head.", "fc.", 1): value
            for key, value in model.state_dict().items()
        }
        copy.load_state_dict(weights)
        return copy.to(self.device)

    def sample(
        self, model: lab.LSTMModel, num_tunes: int, length: int, max_calls: int
    ) -> dict[str, Any]:
        """Time the lab's sampler until `num_tunes` tunes have ended.

        Each call generates `length` characters after the prime "X", as the lab
        does, and a tune counts when the lab's song extractor finds it. Calls stop
        after `num_tunes` or `max_calls` of them, whichever is fewer, so that an
        undertrained model that rarely ends a tune cannot run on for long.
        """
        calls = chars = tunes = 0
        start = time.perf_counter()
        while tunes < num_tunes and calls < min(num_tunes, max_calls):
            text = lab.generate_text(
                model, "X", self.char2idx, self.idx2char, length, self.device
            )
            tunes += len(lab.extract_songs(text))
            chars += len(text)
            calls += 1
        seconds = time.perf_counter() - start
        return sampling_record(seconds, chars, tunes, calls=calls)


class AbcrnnSide:
    """abcrnn's training loop and batched sampler on a workload."""

    def __init__(
        self, workload: Workload, valid_fraction: float, device: torch.device
    ) -> None:
        self.workload = workload
        self.valid_fraction = valid_fraction
        self.device = device
        self.valid_ids = encode(workload.valid_text, workload.chars, device)

    def config(self, preset: str, **changes: Any) -> TrainConfig:
        """Return a preset on this workload, with its bookkeeping turned off.

        Corpus cleaning is off so that abcrnn reads the workload's tunes unchanged.
        TensorBoard, periodic checkpoints, logging and validation are off because
        the lab's Comet logging, plots and checkpoints are left out as well.
        """
        settings: dict[str, Any] = {
            "corpus": (str(self.workload.corpus_file),),
            "normalise": False,
            "deduplicate": False,
            "valid_fraction": self.valid_fraction,
            "device": self.device.type,
            "tensorboard": False,
            "tracker": "none",
            "checkpoint_every": 0,
            "eval_every": 0,
            "log_every": 0,
            "sample_every": 0,
        }
        return resolve_config(preset, settings | changes)

    def check_split(self, config: TrainConfig) -> None:
        """Raise RuntimeError unless abcrnn reads the workload's exact split."""
        texts = load_texts(config)
        expected = (
            join_tunes(self.workload.train_tunes),
            join_tunes(self.workload.valid_tunes),
        )
        if (texts.train_text, texts.valid_text) != expected:
            raise RuntimeError(
                f"abcrnn split {config.corpus[0]} into {len(texts.train_text)} "
                f"training and {len(texts.valid_text)} validation characters, not "
                f"{len(expected[0])} and {len(expected[1])}; the benchmark cannot "
                "compare validation losses"
            )

    def throughput_round(
        self, config: TrainConfig, run_dir: Path, until_step: int
    ) -> float:
        """Continue training in `run_dir` up to step `until_step`; return chars/s.

        The figure is abcrnn's own `tokens_per_s` over the steps of this call: its
        clock starts after setup and stops after the last step's loss is read, so
        resuming and saving are not counted.
        """
        metrics: dict[str, float] = {}

        def record(step: int, model, vocabulary, step_metrics) -> None:
            metrics.update(step_metrics)

        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        config = dataclasses.replace(config, steps=until_step, sample_every=until_step)
        train(config, run_dir, resume=resume, callbacks=[record])
        return metrics["tokens_per_s"]

    def race(
        self, config: TrainConfig, run_dir: Path, target: float, eval_every: int
    ) -> dict[str, Any]:
        """Train until the validation loss reaches `target` or the run ends.

        Training seconds count from the call to `train`, so abcrnn's setup is
        included, and exclude the time spent scoring validation here.
        """
        curve: list[dict[str, float]] = []
        start = time.perf_counter()
        paused = 0.0

        def score(step: int, model: CharRNN, vocabulary, metrics) -> None:
            nonlocal paused
            reached_at = time.perf_counter()
            loss = validation_loss(lambda x: model(x)[0], self.valid_ids, VALID_SEQ_LEN)
            seconds = reached_at - start - paused
            curve.append({"step": step, "val_loss": loss, "train_seconds": seconds})
            log.info("abcrnn step %d: val loss %.4f (target %.4f)", step, loss, target)
            paused += time.perf_counter() - reached_at
            if loss <= target:
                raise TargetReached

        config = dataclasses.replace(config, sample_every=eval_every)
        try:
            train(config, run_dir, callbacks=[score])
        except TargetReached:
            pass
        best = min(curve, key=lambda point: point["val_loss"])
        final = curve[-1]
        return {
            "reached": final["val_loss"] <= target,
            "steps": final["step"],
            "train_seconds": final["train_seconds"],
            "val_loss": final["val_loss"],
            "best_val_loss": best["val_loss"],
            "curve": curve,
        }

    def sampling_model(self, run_dir: Path) -> tuple[CharRNN, Vocabulary, dict]:
        """Load the model saved in `run_dir` (best.pt, else last.pt) for sampling.

        Raises RuntimeError unless its vocabulary is the workload's.
        """
        model, vocabulary, info = load_for_sampling(run_dir, self.device)
        if vocabulary.chars != self.workload.chars:
            raise RuntimeError(
                f"the model in {run_dir} has {len(vocabulary)} characters but the "
                f"workload has {len(self.workload.chars)}; both sides need one "
                "vocabulary"
            )
        return model, vocabulary, info

    def sample(
        self,
        model: CharRNN,
        vocabulary: Vocabulary,
        num_tunes: int,
        length: int,
        at_once: int,
        bf16: bool,
    ) -> dict[str, Any]:
        """Time one `generate_tunes` call for `num_tunes` tunes, `at_once` together.

        With bf16 off the sampler runs in fp32; with it on, in bf16 where the
        device has it ("auto").
        """
        config = SampleConfig(
            num_tunes=num_tunes,
            max_length=length,
            seed=0,
            at_once=at_once,
            bf16="auto" if bf16 else "off",
        )
        result = None

        def generate() -> None:
            nonlocal result
            result = generate_tunes(model, vocabulary, config, self.device)

        seconds = time_call(generate, self.device)
        chars = sum(len(tune) for tune in result.tunes)
        finished = len(result.tunes) - result.unfinished
        record = sampling_record(seconds, chars, finished, calls=1)
        record["prime"] = default_prime(vocabulary)
        record["num_tunes"] = num_tunes
        record["at_once"] = at_once
        record["bf16"] = bf16
        return record


class TargetReached(Exception):
    """Raised by the race callback to stop training once the target loss is met."""


def sampling_record(
    seconds: float, chars: int, tunes: int, calls: int
) -> dict[str, Any]:
    """Return one sampling measurement with its rates per second."""
    return {
        "seconds": seconds,
        "chars": chars,
        "tunes_finished": tunes,
        "calls": calls,
        "chars_per_s": chars / seconds if seconds > 0 else 0.0,
        "tunes_per_s": tunes / seconds if seconds > 0 else 0.0,
    }
