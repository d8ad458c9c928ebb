"""Sample tunes until enough of them pass the ABC checker."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from abcrnn.abc.checker import check_tune
from abcrnn.errors import ConfigError
from abcrnn.sampling import SampleConfig, generate_tunes
from abcrnn.vocabulary import Vocabulary


@dataclass(frozen=True)
class CheckedGeneration:
    """Tunes that passed the checker, and what it took to get them.

    attempts counts every sampled tune and passed those the checker accepted;
    tunes keeps the first `requested` of them, in the order they were sampled.
    """

    tunes: list[str]
    requested: int
    attempts: int
    passed: int

    @property
    def complete(self) -> bool:
        """Return True when as many tunes passed as were requested."""
        return len(self.tunes) >= self.requested


def generate_valid_tunes(
    model: torch.nn.Module,
    vocab: Vocabulary,
    config: SampleConfig,
    max_attempts: int,
    device: torch.device | str | None = None,
) -> CheckedGeneration:
    """Sample batches until config.num_tunes tunes pass the checker, or give up.

    Each batch has config.num_tunes tunes (fewer when the cap is near) and seed
    config.seed + batch number, so a call repeats exactly. Sampling stops after
    `max_attempts` tunes in all; `complete` on the result then shows whether
    enough passed.
    """
    if max_attempts < config.num_tunes:
        raise ConfigError(
            f"--max-attempts {max_attempts} is below --num-tunes {config.num_tunes}; "
            f"allow at least {config.num_tunes} attempts"
        )
    kept: list[str] = []
    attempts = passed = 0
    batch_number = 0
    while len(kept) < config.num_tunes and attempts < max_attempts:
        size = min(config.num_tunes, max_attempts - attempts)
        settings = dataclasses.replace(
            config, num_tunes=size, seed=config.seed + batch_number
        )
        for tune in generate_tunes(model, vocab, settings, device).tunes:
            attempts += 1
            if check_tune(tune).valid:
                passed += 1
                kept.append(tune)
        batch_number += 1
    tunes = kept[: config.num_tunes]
    return CheckedGeneration(tunes, config.num_tunes, attempts, passed)
