"""Sampling speed: the lab's one-character loop against abcrnn's batched sampler.

Both samplers run the same weights: a lab-size model that abcrnn trained during the
throughput phase, copied into the lab's LSTMModel for the lab's loop. So only the
sampling code differs, and finished-tune counts come from the same network.

abcrnn samples `sample_stream` times as many tunes as the count, `count` at a
time: a slot whose tune ends starts the next one (checked every 32 characters).
Its sampler uses bf16 where the device has it. The `_fp32` records run the same
stream in fp32. The `_one_call` records ask for just `count` tunes, so that call
lasts as long as its longest tune. The lab's sampler writes `length`
characters a call and its tunes are counted by the lab's song extractor.

chars/s counts the characters of text each sampler returns. Slots idle between an
end and the next check, so MFU here, based on returned characters, is a lower bound.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench import Bench, fp32_peak_name
from measure import bf16_supported, model_flops_utilisation, ratio

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
        "peak_used": f"{peak_name}, or bf16 for records with bf16 true",
    }
    bf16 = bf16_supported(bench.device)
    for count in bench.plan.sample_tunes:
        lab_record = bench.lab_side.sample(
            lab_model, count, length, bench.plan.lab_max_calls
        )
        # A stream of tunes, `count` at a time: the figure the targets use.
        stream = count * bench.plan.sample_stream
        records = {
            f"lab_{count}": lab_record,
            f"abcrnn_{count}": bench.abcrnn_side.sample(
                model, vocabulary, stream, length, count, bf16
            ),
        }
        if bf16:
            records[f"abcrnn_{count}_fp32"] = bench.abcrnn_side.sample(
                model, vocabulary, stream, length, count, False
            )
        if count > 1:
            # Only `count` tunes in one call: it lasts as long as the longest tune.
            records[f"abcrnn_{count}_one_call"] = bench.abcrnn_side.sample(
                model, vocabulary, count, length, count, bf16
            )
        for name, record in records.items():
            record_peak = "bf16" if record.get("bf16") else peak_name
            record["mfu"] = model_flops_utilisation(
                flops, record["chars_per_s"], peaks[record_peak] or 0.0
            )
            section[name] = record
            if name != f"lab_{count}":
                suffix = name.removeprefix(f"abcrnn_{count}")
                section[f"ratios_{count}{suffix}"] = {
                    "chars_per_s": ratio(
                        record["chars_per_s"], lab_record["chars_per_s"]
                    ),
                    "tunes_per_s": ratio(
                        record["tunes_per_s"], lab_record["tunes_per_s"]
                    ),
                }
        log.info(
            "sampling %d at a time: lab %.2f tunes/s, abcrnn %.2f tunes/s",
            count,
            lab_record["tunes_per_s"],
            records[f"abcrnn_{count}"]["tunes_per_s"],
        )
    return section
