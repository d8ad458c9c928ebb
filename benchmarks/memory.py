"""Peak memory of one training or sampling job, measured in isolation.

On a CPU one helper process (this file run as a script) imports the libraries and
reads the data once, then forks a fresh process for each job. That process resets
its peak resident set size to its current size (Linux), runs the job and reports
the peak less that size. tracemalloc would not do, because it does not see
PyTorch's allocations. On a GPU each job runs in this process and the figure is
torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import lab_reference as lab  # noqa: E402
import torch  # noqa: E402
from measure import (  # noqa: E402
    bf16_supported,
    memory_status,
    ratio,
    report_child_result,
    reset_peak_rss,
    run_child,
)

log = logging.getLogger(__name__)

# A job spec is a JSON-friendly dict:
#   job: "lab_train", "abcrnn_train", "lab_sample" or "abcrnn_sample"
#   source, source_kind ("file" or "collection"), valid_fraction: the workload
#   lab: LabSettings fields; steps: training steps to run
#   abcrnn_config: a TrainConfig.to_dict() for "abcrnn_train"
#   num_tunes, length: tunes and characters per tune for the samplers


def measure_gpu_memory(
    spec: dict[str, Any], device: torch.device, work_dir: Path
) -> dict[str, Any]:
    """Return the peak GPU memory of the job `spec`, run in this process."""
    workload = load_workload(spec, work_dir)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    run_job(spec, workload, device)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {
        "method": "torch.cuda.max_memory_allocated less the allocation before the job",
        "peak_bytes": peak,
        "baseline_bytes": baseline,
        "delta_bytes": peak - baseline,
    }


def run_job(spec: dict[str, Any], workload, device: torch.device) -> None:
    """Run the job of `spec` on `workload` (a workload.Workload) on `device`."""
    settings = lab.LabSettings(**spec["lab"])
    job = spec["job"]
    if job == "lab_train":
        from sides import LabSide

        side = LabSide(workload, settings, device)
        side.run_steps(side.new_trainer(), spec["steps"])
    elif job == "abcrnn_train":
        from abcrnn.config import TrainConfig
        from abcrnn.training import train

        changes = {"corpus": [str(workload.corpus_file)], "device": device.type}
        config = TrainConfig.from_dict(spec["abcrnn_config"] | changes)
        train(config, Path(tempfile.mkdtemp(dir=workload.corpus_file.parent)))
    elif job == "lab_sample":
        model = lab.LSTMModel(
            len(workload.chars), settings.embedding_dim, settings.hidden_size
        ).to(device)
        char2idx, idx2char = lab.build_vocabulary("".join(workload.chars))
        lab.generate_text(model, "X", char2idx, idx2char, spec["length"], device)
    elif job == "abcrnn_sample":
        from abcrnn.model import CharRNN, ModelConfig
        from abcrnn.sampling import SampleConfig, generate_tunes
        from abcrnn.vocabulary import Vocabulary

        model_config = ModelConfig(
            len(workload.chars), settings.embedding_dim, settings.hidden_size
        )
        model = CharRNN(model_config).to(device).eval()
        sample = SampleConfig(num_tunes=spec["num_tunes"], max_length=spec["length"])
        generate_tunes(model, Vocabulary(workload.chars), sample, device)
    else:
        raise ValueError(f"unknown memory job {job!r}")


def load_workload(spec: dict[str, Any], work_dir: Path):
    """Rebuild the workload that the parent process measured."""
    import workload as workloads

    if spec["source_kind"] == "file":
        tunes = workloads.tunes_from_lab_file(Path(spec["source"]), work_dir)
    else:
        tunes = workloads.tunes_from_collection(spec["source"])
    return workloads.build_workload(
        spec["source"], tunes, spec["valid_fraction"], work_dir
    )


def memory_section(bench) -> dict[str, Any]:
    """Measure the peak memory of each contender's training and sampling jobs.

    `bench` is a bench.Bench. The lab's sampler is measured for one call: its loop
    for several tunes makes such calls one after another.
    """
    plan = bench.plan
    common = {
        "source": bench.workload.source,
        "source_kind": bench.source_kind,
        "valid_fraction": bench.valid_fraction,
        "lab": dataclasses.asdict(plan.lab),
        "steps": plan.memory_steps,
        "length": plan.sample_length,
    }
    best_bf16 = bf16_supported(bench.device)
    jobs: dict[str, dict[str, Any]] = {
        "lab_train": {"job": "lab_train"},
        "abcrnn_train_fp32": {
            "job": "abcrnn_train",
            "abcrnn_config": bench.lab_preset(False, steps=plan.memory_steps).to_dict(),
        },
        "abcrnn_train_best": {
            "job": "abcrnn_train",
            "abcrnn_config": bench.lab_preset(
                best_bf16, steps=plan.memory_steps
            ).to_dict(),
        },
        "lab_sample": {"job": "lab_sample", "num_tunes": 1},
    }
    for count in plan.sample_tunes:
        jobs[f"abcrnn_sample_{count}"] = {"job": "abcrnn_sample", "num_tunes": count}

    specs = {name: common | job for name, job in jobs.items()}
    if bench.device.type == "cuda":
        section = {
            name: measure_gpu_memory(spec, bench.device, bench.fresh_dir("memory"))
            for name, spec in specs.items()
        }
    else:
        section = run_child(Path(__file__), [json.dumps(specs)], timeout=3600)
    for name, record in section.items():
        log.info("memory %s: %.1f MB", name, record["delta_bytes"] / 1e6)
    section["ratios"] = memory_ratios(section, plan.sample_tunes)
    return section


def memory_ratios(
    section: dict[str, dict[str, Any]], sample_tunes: tuple[int, ...]
) -> dict[str, float | None]:
    """Return abcrnn's memory growth as a multiple of the lab's, job by job."""
    ratios = {
        name: ratio(section[name]["delta_bytes"], section["lab_train"]["delta_bytes"])
        for name in ("abcrnn_train_fp32", "abcrnn_train_best")
    }
    for count in sample_tunes:
        name = f"abcrnn_sample_{count}"
        ratios[name] = ratio(
            section[name]["delta_bytes"], section["lab_sample"]["delta_bytes"]
        )
    return ratios


def import_job_libraries() -> None:
    """Import what the jobs need before any baseline, so that code is not counted."""
    import matplotlib.figure  # noqa: F401
    import sides  # noqa: F401
    import workload  # noqa: F401

    import abcrnn.sampling  # noqa: F401
    import abcrnn.training  # noqa: F401


def measure_here(spec: dict[str, Any], workload) -> dict[str, Any]:
    """Run one job in this process and return its peak memory growth in bytes.

    delta_bytes is the peak RSS less the RSS before the job, less the growth of
    file-backed pages over the job: those are mostly library code that the job
    runs for the first time, which stays shared with other processes.
    """
    was_reset = reset_peak_rss()
    before = memory_status()
    run_job(spec, workload, torch.device("cpu"))
    after = memory_status()
    rss_growth = after["VmHWM"] - before["VmRSS"]
    file_growth = after["RssFile"] - before["RssFile"]
    method = "peak RSS (VmHWM) of a forked process less its RSS before the job"
    if was_reset:
        method += ", with the peak reset to that size first"
    return {
        "method": method + ", less the growth of file-backed pages",
        "peak_bytes": after["VmHWM"],
        "baseline_bytes": before["VmRSS"],
        "rss_growth_bytes": rss_growth,
        "file_backed_growth_bytes": file_growth,
        "delta_bytes": rss_growth - file_growth,
    }


def measure_in_fork(spec: dict[str, Any], workload) -> dict[str, Any]:
    """Run `measure_here` in a forked copy of this process and return its record.

    The copy starts with this process's libraries and data, and nothing that an
    earlier job allocated. Raises RuntimeError when the copy fails.
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        status = 1
        try:
            os.write(writer, json.dumps(measure_here(spec, workload)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not output:
        raise RuntimeError(
            f"memory job {spec['job']!r} failed in process {pid} (wait status "
            f"{status}); run it alone to see its traceback"
        )
    return json.loads(output)


def main() -> None:
    """Measure the CPU jobs given as a JSON {name: spec} in argv[1]; print results.

    The jobs share one workload, read before any job runs. Where os.fork is
    missing, the jobs run one after another in this process instead.
    """
    specs = json.loads(sys.argv[1])
    import_job_libraries()
    first = next(iter(specs.values()))
    with tempfile.TemporaryDirectory() as folder:
        workload = load_workload(first, Path(folder))
        measure = measure_in_fork if hasattr(os, "fork") else measure_here
        results = {name: measure(spec, workload) for name, spec in specs.items()}
    report_child_result(results)


if __name__ == "__main__":
    main()
