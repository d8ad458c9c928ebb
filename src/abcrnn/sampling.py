"""Compose tunes with a trained model: batched sampling with stop rules.

All requested tunes are generated together as one batch. Each starts from the prime
text and a zero state, and ends at its first blank line ("\\n\\n", the separator
between tunes in the training text) or after `max_length` new characters.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from abcrnn.errors import ConfigError, VocabularyError
from abcrnn.vocabulary import Vocabulary

# NOTE: in oneills1850 most X: numbers have several digits, so a model often writes
# more digits on the line after "X:1\n". With the default preset at step 1000, 12 of
# 40 tunes primed with "X:1\n" went on with a T: line, against 38 of 40 with "X:".
DEFAULT_PRIME = "X:1\n"
END_MARKER = "\n\n"
# Below this many tunes, CPU sampling uses PyTorch's native LSTM kernels instead of
# oneDNN's (see _recurrent_kernels).
ONEDNN_MIN_TUNES = 16
# How often (in generated characters) to ask the device whether every tune has
# ended. Asking waits for the device, so it is not done at every step.
STOP_CHECK_EVERY = 32


@dataclass(frozen=True)
class SampleConfig:
    """Settings for one generation call.

    num_tunes: how many tunes to generate, as one batch.
    prime: text that every tune starts with; None means `default_prime(vocab)`.
    temperature: divides the logits; 0 means greedy (always the most likely
        character), values above 1 make rarer characters more likely.
    top_k: sample only among the k most likely characters; 0 turns it off.
    top_p: sample only among the most likely characters whose probabilities add
        up to at least top_p (nucleus sampling); 1 turns it off.
    max_length: maximum number of new characters per tune, not counting the prime,
        so a prime longer than max_length is allowed.
    seed: seed of the sampling generator; the same seed gives the same tunes.
    """

    num_tunes: int = 1
    prime: str | None = None
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_length: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_tunes < 1:
            raise ConfigError(f"num_tunes must be >= 1, got {self.num_tunes}")
        if not self.temperature >= 0:
            raise ConfigError(
                f"temperature must be >= 0 (0 = greedy), got {self.temperature}"
            )
        if math.isinf(self.temperature):
            raise ConfigError(
                f"temperature must be finite (0 = greedy), got {self.temperature}"
            )
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if self.max_length < 1:
            raise ConfigError(
                f"max_length must be >= 1 new character, got {self.max_length}"
            )
        if self.prime == "":
            raise ConfigError("prime must not be empty; omit it to use the default")


@dataclass(frozen=True)
class GenerationResult:
    """Generated tunes (prime included, trailing whitespace stripped).

    unfinished counts the tunes that reached max_length before a blank line; they
    are included in `tunes` as far as they got. Iterating gives the tunes.
    """

    tunes: list[str]
    unfinished: int = 0

    def __iter__(self) -> Iterator[str]:
        return iter(self.tunes)

    def __len__(self) -> int:
        return len(self.tunes)

    def __getitem__(self, index: int) -> str:
        return self.tunes[index]


def default_prime(vocab: Vocabulary) -> str:
    """Return "X:1\\n", or its longest prefix whose characters are all in `vocab`.

    NOTE: a vocabulary without "X" (not ABC text) gets its first character.
    """
    for end in range(len(DEFAULT_PRIME), 0, -1):
        prefix = DEFAULT_PRIME[:end]
        if not vocab.unknown(prefix):
            return prefix
    return vocab.chars[0]


def generate_tunes(
    model: torch.nn.Module,
    vocab: Vocabulary,
    config: SampleConfig,
    device: torch.device | str | None = None,
) -> GenerationResult:
    """Generate `config.num_tunes` tunes at once from `model`.

    Raises VocabularyError when the prime has characters outside `vocab`.
    """
    prime = default_prime(vocab) if config.prime is None else config.prime
    unknown = vocab.unknown(prime)
    if unknown:
        listed = ", ".join(repr(char) for char in unknown)
        raise VocabularyError(
            f"the prime contains {len(unknown)} character(s) that the model never "
            f"saw: {listed}; remove them from --prime"
        )
    if device is None:
        device = _model_device(model)
    device = torch.device(device)
    with torch.inference_mode(), _recurrent_kernels(device, config.num_tunes):
        ids, lengths = _sample_ids(model, vocab, prime, config, device)
    return _decode(vocab, prime, ids, lengths)


def _recurrent_kernels(
    device: torch.device, count: int
) -> contextlib.AbstractContextManager:
    """Return a context that picks PyTorch's native LSTM kernels for a few tunes on CPU.

    A oneDNN LSTM call has a fixed cost of several milliseconds, which dominates a
    one-character step for small batches. Measured on a 2-core AMD EPYC with a
    lab-size model (LSTM 1024): 6.95 ms a step with oneDNN against 1.38 ms native
    for 1 tune, 8.2 against 7.0 ms for 8, about equal at 16, oneDNN ahead from 32.
    """
    if device.type != "cpu" or count >= ONEDNN_MIN_TUNES:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    # Setting the flags also sets oneDNN's TF32 switch, which warns on CPU builds.
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", UserWarning)
    stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
    return stack


def _model_device(model: torch.nn.Module) -> torch.device:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _sample_ids(
    model: torch.nn.Module,
    vocab: Vocabulary,
    prime: str,
    config: SampleConfig,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return new ids (N, max_length) and each tune's length up to its end marker.

    A tune that never ended has length -1.
    """
    count, max_length = config.num_tunes, config.max_length
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    newline = vocab.encode("\n")[0] if "\n" in vocab else -1

    # Run the prime through the network from a zero state.
    prime_ids = torch.tensor(vocab.encode(prime), device=device)
    state = model.initial_state(count, device)
    logits, state = model(prime_ids.expand(count, -1), state)  # (N, P, V)
    after_newline = torch.full((count,), prime.endswith("\n"), device=device)

    # Sample one character per step for every tune; record where each one ends.
    ids = torch.empty(count, max_length, dtype=torch.long, device=device)
    lengths = torch.full((count,), -1, dtype=torch.long, device=device)
    for position in range(max_length):
        next_ids = pick_next(logits[:, -1], config, generator)  # (N,)
        ids[:, position] = next_ids
        is_newline = next_ids == newline
        ends_here = after_newline & is_newline & (lengths < 0)
        lengths = torch.where(ends_here, position + 1, lengths)
        after_newline = is_newline
        if (position + 1) % STOP_CHECK_EVERY == 0 and bool((lengths >= 0).all()):
            return ids[:, : position + 1], lengths
        logits, state = model(next_ids[:, None], state)  # (N, 1, V)
    return ids, lengths


def pick_next(
    logits: torch.Tensor, config: SampleConfig, generator: torch.Generator
) -> torch.Tensor:
    """Choose one id per row of `logits` (N, V) by the rules in `config`."""
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / config.temperature
    if 0 < config.top_k < logits.size(-1):
        kth_largest = logits.topk(config.top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if config.top_p < 1:
        logits = _keep_top_p(logits, config.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _keep_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask all but the fewest most likely ids whose probabilities reach top_p."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass ahead of each id
    drop_sorted = before >= top_p  # the most likely id is always kept
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _decode(
    vocab: Vocabulary, prime: str, ids: torch.Tensor, lengths: torch.Tensor
) -> GenerationResult:
    tunes = []
    for row, length in zip(ids.tolist(), lengths.tolist(), strict=True):
        new_text = vocab.decode(row if length < 0 else row[:length])
        tunes.append((prime + new_text).rstrip())
    unfinished = sum(1 for length in lengths.tolist() if length < 0)
    return GenerationResult(tunes, unfinished)
