"""Sampling speed: the lab's one-character loop against abcrnn's batched sampler.

Both samplers run the same weights: a lab-size model that abcrnn trained during the
throughput phase, copied into the lab's LSTMModel for the lab's loop. So only the
sampling code differs, and finished-tune counts come from the same network.

chars/s counts the characters of text each sampler returns. abcrnn's batch keeps
stepping finished tunes until the last one ends (checked every 32 characters), so
its MFU here, based on returned characters, is a lower bound.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench import Bench, fp32_peak_name
from measure import model_flops_utilisation, ratio

log = logging.getLogger(__name__)


def sampling_speed(
    bench: Bench, model_dir: Path, peaks: dict[str, float | None]
) -> dict[str, Any]:
    """Measure chars/s and finished tunes/s for each tune count, alternating sides."""
    model, vocabulary, info = bench.abcrnn_side.sampling_model(model_dir)
    lab_model = bench.lab_side.model_from(model)
    length = bench.plan.sample_length
    flops = bench.forward_flops()
    peak_name = fp32_peak_name(bench.device)
    section: dict[str, Any] = {
        "model": {
            "trained_steps": info["step"],
            "val_loss": bench.lab_side.val_loss(lab_model),
            "embedding_dim": model.config.embedding_dim,
            "hidden_size": model.config.hidden_size,
        },
        "length": length,
        "flops_per_char": flops,
        "peak_used": peak_name,
    }
    for count in bench.plan.sample_tunes:
        lab_record = bench.lab_side.sample(
            lab_model, count, length, bench.plan.lab_max_calls
        )
        abcrnn_record = bench.abcrnn_side.sample(model, vocabulary, count, length)
        for record in (lab_record, abcrnn_record):
            record["mfu"] = model_flops_utilisation(
                flops, record["chars_per_s"], peaks[peak_name] or 0.0
            )
        section[f"lab_{count}"] = lab_record
        section[f"abcrnn_{count}"] = abcrnn_record
        section[f"ratios_{count}"] = {
            "chars_per_s": ratio(
                abcrnn_record["chars_per_s"], lab_record["chars_per_s"]
            ),
            "tunes_per_s": ratio(
                abcrnn_record["tunes_per_s"], lab_record["tunes_per_s"]
            ),
        }
        log.info(
            "sampling %d tune(s): lab %.0f chars/s, abcrnn %.0f chars/s",
            count,
            lab_record["chars_per_s"],
            abcrnn_record["chars_per_s"],
        )
    return section
