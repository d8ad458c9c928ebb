"""Meter, key, mode and length of tunes, and how far apart two sets of tunes are.

Each feature gives one label per tune, so a set of tunes gives a distribution
over labels. Two distributions are compared by total variation distance, which
is half the sum of the absolute differences of their probabilities: 0 for the
same distribution, 1 when no label is in common.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from abcrnn.abc.parser import parse_tune

FEATURES = ("meter", "key_tonic", "mode", "length")

# Upper bounds (exclusive) of the length buckets, in written bars of the first
# voice: "0-7", "8-15", "16-23", "24-31", "32-47", "48-63" and "64+".
LENGTH_BOUNDS = (8, 16, 24, 32, 48, 64)


@dataclass(frozen=True)
class TuneFeatures:
    """The labels of one tune.

    meter is "6/8" style ("C" is 4/4, "none" when missing or free), key_tonic is
    e.g. "F#" ("none" when the key is missing or K:none), mode is e.g. "dorian",
    length is a bucket of bars (see LENGTH_BOUNDS) and bars the exact count.
    """

    meter: str
    key_tonic: str
    mode: str
    length: str
    bars: int


def length_bucket(bars: int) -> str:
    """Return the label of the length bucket that contains `bars` bars."""
    lower = 0
    for upper in LENGTH_BOUNDS:
        if bars < upper:
            return f"{lower}-{upper - 1}"
        lower = upper
    return f"{lower}+"


def tune_features(tune: str) -> TuneFeatures:
    """Read the meter, key, mode and length of one tune.

    parse_tune reports faults as diagnostics instead of raising, so any text gives
    labels ("none" where a field is missing or invalid).
    """
    parsed = parse_tune(tune)
    meter = parsed.meter
    key = parsed.key
    first_voice = parsed.voices[0] if parsed.voices else None
    bars = sum(bar.voice == first_voice for bar in parsed.bars)
    return TuneFeatures(
        meter=f"{meter.numerator}/{meter.denominator}" if meter else "none",
        key_tonic=key.tonic if key and key.tonic else "none",
        mode=key.mode if key else "none",
        length=length_bucket(bars),
        bars=bars,
    )


def distribution(labels: Iterable[str]) -> dict[str, float]:
    """Return the share of each label, most common first (empty for no labels)."""
    counts = Counter(labels)
    total = sum(counts.values())
    return {label: count / total for label, count in counts.most_common()}


def total_variation(first: dict[str, float], second: dict[str, float]) -> float:
    """Return the total variation distance of two distributions, in [0, 1]."""
    labels = set(first) | set(second)
    differences = (abs(first.get(x, 0.0) - second.get(x, 0.0)) for x in labels)
    return 0.5 * sum(differences)


def feature_distributions(
    features: Sequence[TuneFeatures],
) -> dict[str, dict[str, float]]:
    """Return the distribution of each feature in FEATURES over some tunes."""
    rows = [asdict(item) for item in features]
    return {name: distribution(row[name] for row in rows) for name in FEATURES}


def feature_distances(
    features: Sequence[TuneFeatures], reference: Sequence[TuneFeatures]
) -> dict[str, float]:
    """Return the total variation distance of each feature between two tune sets."""
    ours = feature_distributions(features)
    theirs = feature_distributions(reference)
    return {name: total_variation(ours[name], theirs[name]) for name in FEATURES}
