"""The readable summary of an evaluation (evaluation.md), built from its JSON dict."""

from __future__ import annotations

from typing import Any

# (label, key in the scores dict, kind) of each table row, in order.
_ROWS = (
    ("valid (no checker error)", "valid_share", "share"),
    ("bars all add up", "bars_add_up_share", "share"),
    ("converts to MIDI", "midi_share", "share"),
    ("longest passage shared with a training tune, mean", "novelty.mean", "bars"),
    ("longest passage shared with a training tune, max", "novelty.max", "bars"),
    ("near-copies of a training tune", "novelty.share", "share"),
    ("meter distance", "distance.meter", "distance"),
    ("key tonic distance", "distance.key_tonic", "distance"),
    ("mode distance", "distance.mode", "distance"),
    ("length distance", "distance.length", "distance"),
)
_NOVELTY_KEYS = {
    "novelty.mean": "longest_shared_bars_mean",
    "novelty.max": "longest_shared_bars_max",
    "novelty.share": "near_copy_share",
}


def evaluation_markdown(report: dict[str, Any]) -> str:
    """Return evaluation.md: settings, a table of generated vs real tunes, faults."""
    generated, real = report["generated"], report["real_tunes"]
    lines = [f"# Evaluation of {report['run_dir']}", "", *_setting_lines(report), ""]
    lines += [
        "| measure | generated | real tunes (ceiling) |",
        "|---|---:|---:|",
    ]
    for label, key, kind in _ROWS:
        ours = _format(_value(generated, key), kind)
        ceiling = _format(_value(real, key), kind) if real else "-"
        lines.append(f"| {label} | {ours} | {ceiling} |")
    lines += ["", *_note_lines(report), ""]
    lines += _distribution_lines(generated, real)
    return "\n".join(lines) + "\n"


def _setting_lines(report: dict[str, Any]) -> list[str]:
    settings, corpus = report["settings"], report["corpus"]
    generated = report["generated"]
    lines = [
        f"Checkpoint `{report['checkpoint']}` at step {report['step']}. "
        f"{generated['tunes']} tunes sampled at temperature "
        f"{settings['temperature']:g} (seed {settings['seed']}, at most "
        f"{settings['max_length']} new characters each, "
        f"{_prime_text(settings.get('prime'))}); "
        f"{generated['unfinished']} did not end within that length.",
        "",
        f"Corpus: {', '.join(corpus['sources'])}: {corpus['train_tunes']} training "
        f"and {corpus['valid_tunes']} validation tunes, split as in training.",
    ]
    if corpus["matches_run"] is False:
        lines.append(
            "Warning: the corpus read now differs from the one the run was trained "
            "on, so the figures below compare against other tunes."
        )
    bpc = report["validation_bits_per_char"]
    if bpc is not None:
        lines += ["", f"Validation: {bpc:.3f} bits per character on the whole text."]
    return lines


def _prime_text(prime: str | None) -> str:
    return "default prime" if prime is None else f"prime `{prime!r}`"


def _note_lines(report: dict[str, Any]) -> list[str]:
    novelty = report["generated"]["novelty"]
    lines = [
        "The real tunes are the validation tunes, measured against the training "
        "tunes. Distances are total variation distances to the training tunes "
        "(0 = the same distribution, 1 = no label in common). Near-copy rule: "
        f"{novelty['rule']}.",
    ]
    faults = report["generated"]["error_tunes"]
    if faults:
        listed = ", ".join(f"{code} {count}" for code, count in faults.items())
        lines += ["", f"Generated tunes with each error: {listed}."]
    return lines


def _distribution_lines(generated: dict, real: dict | None) -> list[str]:
    lines = ["## Most common labels", ""]
    lines += ["| feature | generated | real tunes |", "|---|---|---|"]
    for name, shares in generated["feature_distributions"].items():
        ours = _labels(shares)
        theirs = _labels(real["feature_distributions"][name]) if real else "-"
        lines.append(f"| {name} | {ours} | {theirs} |")
    return lines


def _labels(shares: dict[str, float]) -> str:
    return ", ".join(f"{label} {share:.0%}" for label, share in shares.items())


def _value(scores: dict[str, Any], key: str) -> Any:
    if key in _NOVELTY_KEYS:
        return scores["novelty"][_NOVELTY_KEYS[key]]
    if key.startswith("distance."):
        return scores["feature_distances"][key.split(".", 1)[1]]
    return scores[key]


def _format(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "share":
        return f"{value:.1%}"
    if kind == "bars":
        return f"{value:g}"
    return f"{value:.3f}"
