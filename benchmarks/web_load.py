"""Send concurrent generate requests to a local abcrnn server; report latency.

Against a server that is already running:

    abcrnn serve --runs-dir runs &
    python benchmarks/web_load.py --url http://127.0.0.1:8000 --run NAME

Or let the script start the app itself on a free 127.0.0.1 port:

    python benchmarks/web_load.py --runs-dir runs --run NAME

Every request has the same settings with its own seed, and all of them are sent
at once. The script prints one line: successes, p50 and p95 latency in seconds, and
the wall time for the whole batch. It sends nothing to any host but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="address of a running server on 127.0.0.1")
    parser.add_argument("--runs-dir", type=Path, help="start the app on these runs")
    parser.add_argument("--run", required=True, help="name of the run to sample")
    parser.add_argument(
        "--requests", type=int, default=50, help="requests sent at once (default: 50)"
    )
    parser.add_argument(
        "--num-tunes", type=int, default=1, help="tunes a request (default: 1)"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=300,
        help="characters a tune (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds a request (default: 600)"
    )
    args = parser.parse_args(argv)
    if (args.url is None) == (args.runs_dir is None):
        parser.error("give exactly one of --url and --runs-dir")
    if args.url and urlsplit(args.url).hostname != "127.0.0.1":
        parser.error("--url must point at 127.0.0.1")
    return args


def start_server(runs_dir: Path, output_dir: Path) -> tuple[str, object]:
    """Start uvicorn with the app in a thread; return its address and the server."""
    import uvicorn

    from abcrnn.web.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(runs_dir, output_dir), host="127.0.0.1", port=port, log_level="error"
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


async def send_one(client: httpx.AsyncClient, body: dict) -> tuple[int, float]:
    """Send one generate request; return its status (0 on failure) and seconds."""
    start = time.perf_counter()
    try:
        response = await client.post("/api/generate", json=body)
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    return status, time.perf_counter() - start


async def probe_runs(client: httpx.AsyncClient, delay: float) -> float:
    """Wait `delay` seconds, then time one GET /api/runs; return its seconds."""
    await asyncio.sleep(delay)
    start = time.perf_counter()
    await client.get("/api/runs")
    return time.perf_counter() - start


async def send_all(
    url: str, args: argparse.Namespace
) -> tuple[list[tuple[int, float]], float]:
    """Send `args.requests` generate requests at once and wait for every response.

    Half a second in, while they are running, one GET /api/runs is timed as well:
    a long wait there would mean generation blocks the server's event loop.
    Returns each request's (status, seconds) and the seconds of that GET.
    """
    limits = httpx.Limits(max_connections=args.requests + 1)
    async with httpx.AsyncClient(
        base_url=url, timeout=args.timeout, limits=limits
    ) as client:
        bodies = [
            {
                "run": args.run,
                "num_tunes": args.num_tunes,
                "sampling": {"max_length": args.max_length, "seed": seed},
            }
            for seed in range(args.requests)
        ]
        probe = asyncio.create_task(probe_runs(client, 0.5))
        results = await asyncio.gather(*(send_one(client, body) for body in bodies))
        return results, await probe


def percentile(values: list[float], fraction: float) -> float:
    """Return the `fraction` quantile of `values` (linear interpolation)."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[round(fraction * 100) - 1]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its summary line."""
    args = parse_args(argv)
    server = None
    with tempfile.TemporaryDirectory(prefix="abcrnn-web-load-") as output_dir:
        url = args.url
        if url is None:
            url, server = start_server(args.runs_dir, Path(output_dir))

        # One request first, so that loading the model is not timed.
        warm_up = argparse.Namespace(**{**vars(args), "requests": 1})
        warm, _ = asyncio.run(send_all(url, warm_up))
        if warm[0][0] != 200:
            print(f"warm-up request failed with status {warm[0][0]}")
            return 1
        start = time.perf_counter()
        results, probe_seconds = asyncio.run(send_all(url, args))
        wall = time.perf_counter() - start
        if server is not None:
            server.should_exit = True

    latencies = [seconds for status, seconds in results if status == 200]
    failed = [status for status, _ in results if status != 200]
    print(
        f"{len(latencies)}/{len(results)} succeeded"
        + (f" (failed statuses: {sorted(set(failed))})" if failed else "")
        + (
            f", p50 {percentile(latencies, 0.50):.2f} s, "
            f"p95 {percentile(latencies, 0.95):.2f} s"
            if latencies
            else ""
        )
        + f", wall {wall:.2f} s for {args.requests} concurrent requests "
        f"of {args.num_tunes} tune(s), max_length {args.max_length}; "
        f"GET /api/runs during the load took {probe_seconds:.3f} s"
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
