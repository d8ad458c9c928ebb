"""Numbers and sentences about a study's runs: what each factor changed, by how much.

Runs are the summaries that `sweep_scoring.score_run` writes. For ofat and grid
studies a factor's effect is read along its line: the runs where every other
factor has its base value. For random and tpe studies, runs are grouped by the
factor's value when it is a list, and ranked against it when it is a range.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from abcrnn.sweep import Factor, StudySpec, base_values, format_value
from abcrnn.sweep_scoring import OVERFIT_BITS

# Measures of a run that the report compares across a factor's values.
MEASURES = {
    "best_val_bpc": "best validation bits/char",
    "chars_per_s": "training characters/s",
    "valid_tune_share": "valid-tune share",
}


@dataclass(frozen=True)
class FactorEffect:
    """The mean of each measure at each value of one factor (None where missing)."""

    factor: str
    values: tuple[Any, ...]
    means: dict[str, tuple[float | None, ...]]

    def spread(self, measure: str) -> float | None:
        """Return max - min of the measure's means over the values."""
        known = [mean for mean in self.means[measure] if mean is not None]
        return max(known) - min(known) if len(known) > 1 else None

    def ratio(self, measure: str) -> float | None:
        """Return max / min of the measure's means over the values."""
        known = [mean for mean in self.means[measure] if mean]
        return max(known) / min(known) if len(known) > 1 else None


def line_runs(runs: list[dict], spec: StudySpec, factor: Factor) -> list[dict]:
    """Return the runs that show `factor` alone: its line for ofat/grid, else all."""
    if spec.searches:
        return list(runs)
    base = base_values(spec)
    others = [name for name in base if name != factor.name]
    return [run for run in runs if all(run["values"].get(n) == base[n] for n in others)]


def factor_effect(runs: list[dict], spec: StudySpec, factor: Factor) -> FactorEffect:
    """Return the mean of each measure per value, over the runs that show `factor`.

    For ofat the runs are the factor's line. For grid, random and tpe all runs
    count, so a value's mean is over every combination of the other factors.
    """
    chosen = line_runs(runs, spec, factor) if spec.mode == "ofat" else runs
    values = sorted({run["values"][factor.name] for run in chosen}, key=_sort_key)
    means = {
        measure: tuple(
            _mean(r.get(measure) for r in chosen if r["values"][factor.name] == v)
            for v in values
        )
        for measure in MEASURES
    }
    return FactorEffect(factor.name, tuple(values), means)


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, int | float) else (1, 0, str(value))


def _mean(numbers) -> float | None:
    known = [number for number in numbers if number is not None]
    return statistics.fmean(known) if known else None


def rank_correlation(pairs: list[tuple[float, float]]) -> float | None:
    """Return Spearman's rank correlation of (x, y) pairs (ties get mean ranks)."""
    if len(pairs) < 3:
        return None
    xs, ys = _ranks([x for x, _ in pairs]), _ranks([y for _, y in pairs])
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return statistics.correlation(xs, ys)


def _ranks(numbers: list[float]) -> list[float]:
    order = sorted(range(len(numbers)), key=numbers.__getitem__)
    ranks = [0.0] * len(numbers)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and numbers[order[end + 1]] == numbers[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2
        start = end + 1
    return ranks


def analyse(runs: list[dict], spec: StudySpec) -> list[str]:
    """Return the report's analysis: one paragraph per finding, from the numbers."""
    scored = [run for run in runs if run.get("best_val_bpc") is not None]
    if not scored:
        return ["No run has a validation score yet, so there is nothing to compare."]
    paragraphs = [_best_run(scored)]
    effects = []
    for factor in spec.factors:
        if factor.is_range:
            paragraphs.append(_range_paragraph(scored, factor))
            continue
        effect = factor_effect(scored, spec, factor)
        effects.append(effect)
        paragraphs.append(_effect_paragraph(effect))
    if len(effects) > 1:
        paragraphs.append(_ranking(effects))
    paragraphs.append(_overfitting(scored))
    gap = _train_gap(scored)
    if gap is not None:
        paragraphs.append(gap)
    paragraphs.extend(_failures(runs))
    return paragraphs


def _best_run(runs: list[dict]) -> str:
    best = min(runs, key=lambda run: run["best_val_bpc"])
    fastest = max(runs, key=lambda run: run.get("chars_per_s") or 0)
    return (
        f"The best run is {best['name']} with {best['best_val_bpc']:.3f} bits/char "
        f"on the validation tunes; the fastest is {fastest['name']} at "
        f"{fastest['chars_per_s']:,.0f} characters/s."
    )


def _effect_paragraph(effect: FactorEffect) -> str:
    """Return e.g. "**lr**: best validation bits/char 2.1 at 0.001, ... ."."""
    sentences = [
        f"**{effect.factor}**: best validation bits/char "
        + _by_value(effect, "best_val_bpc", ".3f"),
        "Characters/s " + _by_value(effect, "chars_per_s", ",.0f"),
        "Valid tunes " + _by_value(effect, "valid_tune_share", ".0%"),
    ]
    spread = effect.spread("best_val_bpc")
    if spread is not None:
        known = [
            (mean, value)
            for mean, value in zip(
                effect.means["best_val_bpc"], effect.values, strict=True
            )
            if mean is not None
        ]
        lowest = format_value(min(known)[1])
        sentences[0] += f" (spread {spread:.3f}, lowest at {lowest})"
    ratio = effect.ratio("chars_per_s")
    if ratio is not None:
        sentences[1] += f" (fastest/slowest {ratio:.1f}x)"
    return ". ".join(sentences) + "."


def _by_value(effect: FactorEffect, measure: str, number_format: str) -> str:
    pairs = zip(effect.means[measure], effect.values, strict=True)
    return ", ".join(
        f"{_num(mean, number_format)} at {format_value(value)}" for mean, value in pairs
    )


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _ranking(effects: list[FactorEffect]) -> str:
    quality = sorted(
        (e for e in effects if e.spread("best_val_bpc") is not None),
        key=lambda e: -e.spread("best_val_bpc"),
    )
    speed = sorted(
        (e for e in effects if e.ratio("chars_per_s") is not None),
        key=lambda e: -e.ratio("chars_per_s"),
    )
    text = "Quality moved most with " + ", then ".join(
        f"{e.factor} ({e.spread('best_val_bpc'):.3f} bits/char)" for e in quality
    )
    text += ". Speed moved most with " + ", then ".join(
        f"{e.factor} ({e.ratio('chars_per_s'):.1f}x)" for e in speed
    )
    return text + "."


def _range_paragraph(runs: list[dict], factor: Factor) -> str:
    pairs = [(r["values"][factor.name], r["best_val_bpc"]) for r in runs]
    best = min(runs, key=lambda run: run["best_val_bpc"])
    rho = rank_correlation(pairs)
    text = f"**{factor.name}** over {len(pairs)} runs: the best run used "
    text += f"{format_value(best['values'][factor.name])}"
    if rho is not None:
        text += f"; rank correlation with best bits/char {rho:+.2f}"
        text += " (positive: higher values score worse)"
    return text + "."


def _overfitting(runs: list[dict]) -> str:
    rising = [run for run in runs if run.get("overfits")]
    if not rising:
        return (
            "No run overfit: every run's last validation bits/char is within "
            f"{OVERFIT_BITS} of its best, so the budget ends before overfitting."
        )
    sentences = []
    for run in rising:
        best, last = run["best_val_bpc"], run["last_val_bpc"]
        best_chars = _chars_at(run, best)
        sentences.append(
            f"{run['name']} reached {best:.3f} bits/char after "
            f"{best_chars / 1e6:.1f} M characters and ended at {last:.3f} "
            f"(+{last - best:.3f})"
        )
    return "Overfitting (validation rose after its best): " + "; ".join(sentences) + "."


def _train_gap(runs: list[dict]) -> str | None:
    """Return a sentence on the widest training-validation gap at the end."""
    gaps = [
        (run["last_val_bpc"] - run["last_train_bpc"], run)
        for run in runs
        if run.get("last_train_bpc") is not None and run.get("last_val_bpc") is not None
    ]
    if not gaps:
        return None
    gap, run = max(gaps, key=lambda pair: pair[0])
    dropout = run["train_config"].get("dropout", 0.0)
    note = f" (training loss measured with dropout {dropout:g})" if dropout else ""
    if gap <= 0:
        return (
            "At the end of every run the training bits/char is at or above the "
            f"validation bits/char{note}."
        )
    return (
        f"The widest end-of-run gap between training and validation bits/char is "
        f"{gap:.3f} in {run['name']}{note}."
    )


def _chars_at(run: dict, bpc: float) -> float:
    return next(chars for chars, value in run["curve"] if value == bpc)


def _failures(runs: list[dict]) -> list[str]:
    notes = []
    for run in runs:
        if run["status"] == "pruned":
            notes.append(f"{run['name']} was pruned at step {run['steps']}.")
        elif run["status"] == "diverged":
            notes.append(f"{run['name']} diverged: {run['error']}")
    return notes
