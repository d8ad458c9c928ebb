"""Score a trained run: are its tunes right, new, and like the corpus?

`evaluate_run` samples tunes from a run's checkpoint. It measures the share of
them that the checker accepts, whose bars all add up and that abc2midi converts
to MIDI. It measures their novelty against the training tunes (longest shared
passage in bars, near-copies), and the total variation distance between their
meters, key tonics, modes and lengths and those of the training tunes. It also
scores the model on the whole validation text, in bits per character.

The same tune figures for the run's validation tunes, measured against its
training tunes, are the ceiling: what real tunes of the corpus reach.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from abcrnn.abc.checker import check_tune, summarise
from abcrnn.abc.features import (
    TuneFeatures,
    feature_distances,
    feature_distributions,
    tune_features,
)
from abcrnn.abc.novelty import BarIndex, novelty
from abcrnn.atomic import write_text_atomic
from abcrnn.config import TrainConfig
from abcrnn.corpus import CorpusOptions, join_tunes, load_corpus, split_corpus
from abcrnn.errors import CheckpointError, ConfigError, RenderError
from abcrnn.evaluation_report import evaluation_markdown

# Labels kept per feature in the report's distributions.
TOP_LABELS = 6


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of one evaluation: how many tunes to sample, and how.

    temperature divides the logits (0 = greedy); max_length is in new characters
    per tune; seed makes the sampled tunes repeatable; prime is the text every
    tune starts with (None: the sampler's default, as `abcrnn generate` uses);
    at_once and bf16 are passed on to SampleConfig.
    """

    num_tunes: int = 100
    temperature: float = 1.0
    seed: int = 0
    max_length: int = 1500
    prime: str | None = None
    at_once: int = 64
    bf16: str = "auto"

    def __post_init__(self) -> None:
        if self.num_tunes < 1:
            raise ConfigError(f"--num-tunes must be >= 1, got {self.num_tunes}")
        if not self.temperature >= 0:
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature}")
        if self.max_length < 1:
            raise ConfigError(f"--max-length must be >= 1, got {self.max_length}")


@dataclass(frozen=True)
class RunCorpus:
    """The run's training and validation tunes, rebuilt from its settings.

    matches_run is False when the rebuilt text differs from the fingerprint the
    run saved (the sources changed since training), and None without one.
    """

    train_tunes: list[str]
    valid_tunes: list[str]
    matches_run: bool | None


def run_corpus(train_config: TrainConfig, fingerprint: dict | None) -> RunCorpus:
    """Read the run's corpus and split it as training did (same options and seed)."""
    from abcrnn.run_setup import SPLIT_SEED

    options = CorpusOptions(
        normalise=train_config.normalise,
        drop_titles=train_config.drop_titles,
        drop_chords=train_config.drop_chords,
        drop_decorations=train_config.drop_decorations,
        deduplicate=train_config.deduplicate,
    )
    tunes = load_corpus(train_config.corpus, options).tunes
    train, valid = tunes, []
    if train_config.valid_fraction > 0 and len(tunes) >= 2:
        train, valid = split_corpus(tunes, train_config.valid_fraction, SPLIT_SEED)

    matches = None
    if fingerprint and "sha256" in fingerprint:
        valid_text = join_tunes(valid) if valid else ""
        text = f"{join_tunes(train)}\0{valid_text}"
        matches = hashlib.sha256(text.encode()).hexdigest() == fingerprint["sha256"]
    return RunCorpus(train, valid, matches)


def score_tunes(
    tunes: Sequence[str],
    index: BarIndex,
    reference: Sequence[TuneFeatures],
    midi_folder: Path | None,
) -> dict[str, Any]:
    """Return validity, MIDI, novelty and feature figures for some tunes.

    `index` and `reference` describe the training tunes. Without `midi_folder`
    (abc2midi missing) the MIDI share is None.
    """
    results = [check_tune(tune) for tune in tunes]
    features = [tune_features(tune) for tune in tunes]
    count = max(len(tunes), 1)
    distributions = feature_distributions(features)
    return {
        "tunes": len(tunes),
        "valid_share": sum(result.valid for result in results) / count,
        "bars_add_up_share": sum(map(_bars_add_up, tunes)) / count,
        "midi_share": _midi_share(tunes, midi_folder),
        "error_tunes": summarise(results).error_tunes,
        "novelty": novelty(tunes, index).to_dict(),
        "feature_distances": feature_distances(features, reference),
        "feature_distributions": {
            name: dict(list(shares.items())[:TOP_LABELS])
            for name, shares in distributions.items()
        },
    }


def _bars_add_up(tune: str) -> bool:
    """Return True when the tune has a meter and every bar of it is measured right.

    A bar that contains a syntax error cannot be measured, so it counts as wrong.
    """
    from abcrnn.abc.checker import bar_diagnostics
    from abcrnn.abc.parser import parse_tune

    parsed = parse_tune(tune)
    if parsed.meter is None or not parsed.bars:
        return False
    if any(bar.damaged for bar in parsed.bars):
        return False
    return not bar_diagnostics(parsed.bars)


def _midi_share(tunes: Sequence[str], folder: Path | None) -> float | None:
    """Return the share of tunes abc2midi turns into a MIDI file with notes."""
    from abcrnn.abc.midi import abc_to_midi

    if folder is None or not tunes:
        return None
    converted = sum(abc_to_midi(tune, folder / "tune.mid").ok for tune in tunes)
    return converted / len(tunes)


def validation_bits_per_char(model, vocab, text: str, config: TrainConfig, device):
    """Return the model's mean loss on the whole text in bits per character.

    The text is cut into windows of config.seq_len characters, each read from
    a zero state, as training validates. Returns None for text under 2 characters.
    """
    import torch

    from abcrnn.batches import validation_batches
    from abcrnn.training import evaluate

    ids = torch.tensor(vocab.encode(text), dtype=torch.long, device=device)
    if ids.numel() < 2:
        return None
    windows = (ids.numel() - 1) // min(config.seq_len, ids.numel() - 1)
    batches = math.ceil(windows / config.batch_size)
    pairs = list(validation_batches(ids, config.seq_len, config.batch_size, batches))
    return evaluate(model, pairs, torch.device(device)) / math.log(2)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """Return run_dir/config.json as a dict ({} when the file is missing)."""
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error


def evaluate_run(
    run_dir: Path, config: EvaluateConfig = EvaluateConfig(), device: str = "cpu"
) -> dict[str, Any]:
    """Sample tunes from a run and score them next to the run's real tunes.

    Returns a JSON-ready dict (see docs/evaluation.md for each field).
    """
    from abcrnn.checkpoint import load_for_sampling
    from abcrnn.sampling import SampleConfig, generate_tunes

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"run folder not found: {run_dir}; pass a folder made by `abcrnn train`"
        )
    model, vocab, info = load_for_sampling(run_dir, device)
    saved = read_run_info(run_dir)
    saved_settings = saved.get("train_config") or info["train_config"]
    train_config = TrainConfig.from_dict(saved_settings)
    corpus = run_corpus(train_config, saved.get("corpus"))

    # EvaluateConfig's fields are a subset of SampleConfig's.
    settings = SampleConfig(**asdict(config))
    generated = generate_tunes(model, vocab, settings, device)
    bpc = None
    if corpus.valid_tunes:
        valid_text = join_tunes(corpus.valid_tunes)
        bpc = validation_bits_per_char(model, vocab, valid_text, train_config, device)

    index = BarIndex(corpus.train_tunes)
    reference = [tune_features(tune) for tune in corpus.train_tunes]
    with tempfile.TemporaryDirectory(prefix=".evaluate-", dir=run_dir) as work:
        folder = _midi_folder(Path(work))
        scores = score_tunes(generated.tunes, index, reference, folder)
        scores["unfinished"] = generated.unfinished
        ceiling = None
        if corpus.valid_tunes:
            ceiling = score_tunes(corpus.valid_tunes, index, reference, folder)

    return {
        "run_dir": str(run_dir),
        "checkpoint": str(info["path"]),
        "step": info["step"],
        "settings": asdict(config),
        "corpus": {
            "sources": list(train_config.corpus),
            "train_tunes": len(corpus.train_tunes),
            "valid_tunes": len(corpus.valid_tunes),
            "matches_run": corpus.matches_run,
        },
        "validation_bits_per_char": bpc,
        "generated": scores,
        "real_tunes": ceiling,
        "tunes": generated.tunes,
    }


def _midi_folder(folder: Path) -> Path | None:
    """Return `folder` when abc2midi is installed, else None (no MIDI share)."""
    from abcrnn.abc.midi import find_abc2midi

    try:
        find_abc2midi()
    except RenderError:
        return None
    return folder


def write_evaluation(run_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write run_dir/evaluation.json and evaluation.md atomically; return both paths."""
    run_dir = Path(run_dir)
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    json_path = write_text_atomic(run_dir / "evaluation.json", text)
    md_path = write_text_atomic(run_dir / "evaluation.md", evaluation_markdown(report))
    return json_path, md_path
