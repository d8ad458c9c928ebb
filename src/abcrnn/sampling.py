"""Compose tunes with a trained model: batched sampling with stop rules.

Tunes are sampled together, up to `SampleConfig.at_once` at a time, one per slot.
Each starts from the prime text and a zero state, and ends at its first blank line
("\\n\\n", the separator between tunes in the training text) or after `max_length`
new characters; its slot then starts the next tune. On CPUs with bfloat16 an LSTM
samples through `bf16_lstm.Stepper`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from abcrnn import bf16_lstm
from abcrnn.config import BF16_MODES
from abcrnn.devices import autocast, resolve_bf16
from abcrnn.errors import ConfigError, VocabularyError
from abcrnn.model import State
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
# Characters per tune that the sampler makes room for at first. The room doubles as
# tunes grow, so a large max_length costs memory only when tunes are that long.
FIRST_CAPACITY = 1024


@dataclass(frozen=True)
class SampleConfig:
    """Settings for one generation call.

    num_tunes: how many tunes to generate.
    prime: text that every tune starts with; None means `default_prime(vocab)`.
    temperature: divides the logits; 0 means greedy (always the most likely
        character), values above 1 make rarer characters more likely.
    top_k: sample only among the k most likely characters; 0 turns it off.
    top_p: sample only among the most likely characters whose probabilities add
        up to at least top_p (nucleus sampling); 1 turns it off.
    max_length: maximum number of new characters per tune, not counting the prime,
        so a prime longer than max_length is allowed.
    seed: seed of the sampling generator; the same seed gives the same tunes.
    at_once: how many tunes are sampled together. A slot whose tune ends starts
        the next one. 0 means all `num_tunes` together.
    bf16: "auto", "on" or "off": bfloat16 matmuls where the device has them (CPUs
        with AVX-512 BF16 or AMX, CUDA GPUs); "off" keeps fp32 throughout.
    """

    num_tunes: int = 1
    prime: str | None = None
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_length: int = 1000
    seed: int = 0
    bf16: str = "auto"
    at_once: int = 0

    def __post_init__(self) -> None:
        for name in ("num_tunes", "top_k", "max_length", "seed", "at_once"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
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
        if self.at_once < 0:
            raise ConfigError(
                f"at_once must be >= 0 (0 = all tunes together), got {self.at_once}"
            )
        if self.bf16 not in BF16_MODES:
            raise ConfigError(
                f"bf16 must be one of {', '.join(BF16_MODES)}, got {self.bf16!r}"
            )

    @property
    def slots(self) -> int:
        """Number of tunes sampled together: at_once, at most num_tunes."""
        return min(self.num_tunes, self.at_once or self.num_tunes)


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
    """Generate `config.num_tunes` tunes from `model`, `config.at_once` at a time.

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
    bf16 = resolve_bf16(config.bf16, device)
    slots = config.slots
    with (
        torch.inference_mode(),
        _recurrent_kernels(device, slots, bf16),
        autocast(device, bf16),
        bf16_lstm.matmul_threads() as use_all,
    ):
        step = _stepper(model, slots, device, bf16, use_all)
        sampled = _sample_ids(model, vocab, prime, config, device, step)
    return _decode(vocab, prime, sampled)


Step = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]


def _stepper(
    model: torch.nn.Module,
    count: int,
    device: torch.device,
    bf16: bool,
    use_all: Callable[[bool], None],
) -> Step:
    """Return a function that feeds one id per tune and gives fp32 logits (N, V).

    On a CPU with bfloat16 an LSTM model steps through `bf16_lstm.Stepper`, which
    casts and packs its weights once for the whole call and runs only its matmuls
    on all threads (`use_all` is the switch from `bf16_lstm.matmul_threads`).
    """
    rnn = getattr(model, "rnn", None)
    if bf16 and device.type == "cpu" and bf16_lstm.usable(rnn):
        return bf16_lstm.Stepper(model, count, use_all)

    def step(ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state = model(ids[:, None], state)
        return logits[:, -1].float(), state

    return step


def _recurrent_kernels(
    device: torch.device, count: int, bf16: bool
) -> contextlib.AbstractContextManager:
    """Return a context that picks PyTorch's native LSTM kernels for a few tunes on CPU.

    A oneDNN LSTM call has a fixed cost of several milliseconds, which dominates a
    one-character step for small batches. Measured on a 2-core AMD EPYC with a
    lab-size model (LSTM 1024): 6.95 ms a step with oneDNN against 1.38 ms native
    for 1 tune, 8.2 against 7.0 ms for 8, about equal at 16, oneDNN ahead from 32.
    """
    if bf16 or device.type != "cpu" or count >= ONEDNN_MIN_TUNES:
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
    step: Step,
) -> list[tuple[list[int], bool]]:
    """Return each tune's new ids and whether it ended with the end marker.

    Tunes come in the order they were started. Up to `config.at_once` tunes are
    sampled together, one per slot. Every STOP_CHECK_EVERY characters, slots whose
    tune has ended are read out and start the next tune from the prime's state.
    """
    count, max_length = config.num_tunes, config.max_length
    slots = config.slots
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    newline = vocab.encode("\n")[0] if "\n" in vocab else -1
    starts_after_newline = prime.endswith("\n")

    # Run the prime through the network; a slot starting a tune takes its result.
    prime_ids = torch.tensor(vocab.encode(prime), device=device)
    prime_logits, prime_state = model(
        prime_ids.expand(slots, -1), model.initial_state(slots, device)
    )
    prime_logits = prime_logits[:, -1].float()  # (S, V)
    logits, state = prime_logits.clone(), _clone_state(prime_state)

    # `written` contains each slot's characters, and its last column takes those of
    # ended slots. It starts short and doubles, up to max_length, as tunes grow.
    capacity = min(max_length, FIRST_CAPACITY)
    written = torch.zeros(slots, capacity + 1, dtype=torch.long, device=device)
    oldest_start = 0  # the step before the first character of the oldest tune
    slot_start = [0] * slots
    rows = torch.arange(slots, device=device)
    position = torch.zeros(slots, dtype=torch.long, device=device)
    ended = torch.zeros(slots, dtype=torch.bool, device=device)
    marked = torch.zeros(slots, dtype=torch.bool, device=device)  # by "\n\n"
    after_newline = torch.full((slots,), starts_after_newline, device=device)
    slot_tune = list(range(slots))  # the tune in each slot, or -1 when idle
    results: list[tuple[list[int], bool] | None] = [None] * count
    started = slots
    for characters in itertools.count(1):
        if characters - oldest_start > capacity and capacity < max_length:
            capacity = min(max_length, 2 * capacity)
            written = _widen(written, capacity + 1)
        next_ids = pick_next(logits, config, generator)  # (S,)
        written[rows, torch.where(ended, capacity, position)] = next_ids
        is_newline = next_ids == newline
        marked |= ~ended & after_newline & is_newline
        position += ~ended
        ended |= marked | (position >= max_length)
        after_newline = is_newline
        restart: list[int] = []
        if characters % STOP_CHECK_EVERY == 0 and bool(ended.any()):
            for slot in ended.nonzero().flatten().tolist():
                if slot_tune[slot] < 0:
                    continue
                tune_ids = written[slot, : int(position[slot])].tolist()
                results[slot_tune[slot]] = (tune_ids, bool(marked[slot]))
                slot_tune[slot] = -1
                if started < count:
                    slot_tune[slot] = started
                    started += 1
                    slot_start[slot] = characters
                    restart.append(slot)
            active = [slot_start[slot] for slot in range(slots) if slot_tune[slot] >= 0]
            if not active:
                break
            oldest_start = min(active)
        logits, state = step(next_ids, state)  # (S, V)
        if restart:
            # These slots start their next tune from the prime's result.
            index = torch.tensor(restart, device=device)
            _reset_slots(state, prime_state, index)
            logits[index] = prime_logits[index]
            position[index] = 0
            ended[index] = False
            marked[index] = False
            after_newline[index] = starts_after_newline
    return [result for result in results if result is not None]


def _widen(written: torch.Tensor, columns: int) -> torch.Tensor:
    """Return `written` copied into a wider zero tensor with `columns` columns."""
    wider = written.new_zeros(written.size(0), columns)
    wider[:, : written.size(1) - 1] = written[:, :-1]
    return wider


def _parts(state: State) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _clone_state(state: State) -> State:
    parts = tuple(part.clone() for part in _parts(state))
    return parts if isinstance(state, tuple) else parts[0]


def _reset_slots(state: State, start: State, index: torch.Tensor) -> None:
    """Copy batch positions `index` of `start` into `state`, in place.

    The batch axis is 1 for states shaped (layers, batch, ...), else 0.
    """
    for part, initial in zip(_parts(state), _parts(start), strict=True):
        if part.dim() >= 2:
            part[:, index] = initial[:, index].to(part.dtype)
        else:
            part[index] = initial[index].to(part.dtype)


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
    drop_sorted = before >= top_p
    # The most likely id is always kept, even for a top_p that rounds to 0 in
    # float32 (5e-324 does), which would otherwise drop every id.
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _decode(
    vocab: Vocabulary, prime: str, sampled: list[tuple[list[int], bool]]
) -> GenerationResult:
    tunes = [(prime + vocab.decode(ids)).rstrip() for ids, _ in sampled]
    unfinished = sum(1 for _, marked in sampled if not marked)
    return GenerationResult(tunes, unfinished)
