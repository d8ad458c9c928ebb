"""Wall time to reach the lab's best validation loss: the lab's run, then abcrnn's.

The lab's full run (3000 steps at its settings) is measured once, with the
validation loss every `curve_eval_every` steps, and stored as a curve file that
later runs can reuse. abcrnn then trains with its `default` preset until its
validation loss is at or below the lab's best.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from bench import Bench
from measure import hardware_info, ratio, write_json

log = logging.getLogger(__name__)


def lab_curve_record(bench: Bench) -> dict[str, Any]:
    """Run the lab's full training once and return its curve record."""
    curve, seconds = bench.lab_side.train_curve(bench.plan.curve_eval_every)
    return {
        "workload": bench.workload.summary(),
        "lab_settings": dataclasses.asdict(bench.plan.lab),
        "eval_every": bench.plan.curve_eval_every,
        "hardware": hardware_info(bench.device),
        "total_train_seconds": seconds,
        "curve": curve,
    }


def load_lab_curve(path: Path, bench: Bench) -> dict[str, Any]:
    """Read a stored curve, checking that it was made on this workload and settings.

    Raises ValueError naming the field that differs.
    """
    record = json.loads(path.read_text(encoding="utf-8"))
    expected = {
        "workload": bench.workload.summary(),
        "lab_settings": dataclasses.asdict(bench.plan.lab),
    }
    for key, value in expected.items():
        if record.get(key) != value:
            raise ValueError(
                f"{path} was measured with a different {key} "
                f"({record.get(key)!r}, here {value!r}); run without --lab-curve "
                "to measure the lab's curve for this data and plan"
            )
    return record


def lab_curve(
    bench: Bench, stored: Path | None, write_to: Path
) -> tuple[dict[str, Any], str]:
    """Return the lab's curve record, loaded from `stored` or measured now.

    A measured curve is written to `write_to`. The second value is a note on where
    the record came from.
    """
    if stored is not None:
        return load_lab_curve(stored, bench), f"loaded from {stored}"
    record = lab_curve_record(bench)
    write_json(write_to, record)
    return record, f"measured in this run, written to {write_to}"


def time_to_lab_best(
    bench: Bench, record: dict[str, Any], origin: str
) -> dict[str, Any]:
    """Race abcrnn's default preset to the best validation loss of the lab's curve."""
    best = min(record["curve"], key=lambda point: point["val_loss"])
    plan = bench.plan
    config = bench.abcrnn_side.config("default", **plan.race_changes)
    if config.steps % plan.race_eval_every:
        raise ValueError(
            f"race steps {config.steps} must be a multiple of the validation "
            f"interval {plan.race_eval_every}, so that the last step is scored"
        )
    race = bench.abcrnn_side.race(
        config, bench.fresh_dir("race"), best["val_loss"], plan.race_eval_every
    )
    abcrnn_seconds = race["train_seconds"] if race["reached"] else None
    return {
        "lab": {
            "curve_origin": origin,
            "best_val_loss": best["val_loss"],
            "best_step": best["step"],
            "train_seconds_to_best": best["train_seconds"],
            "total_train_seconds": record["total_train_seconds"],
            "eval_every": record["eval_every"],
        },
        "abcrnn_default": race
        | {
            "settings": {
                key: value
                for key, value in config.to_dict().items()
                if key not in ("corpus",)
            }
        },
        "speedup": ratio(best["train_seconds"], abcrnn_seconds),
    }
