"""Serving throughput and latency: `polyfuse serve` on 127.0.0.1, spoken to over HTTP.

Fits the own-data example (clinical table with a categorical column + 16×16 PNG scans, model
`early`) for a few epochs in a temporary folder, starts `python -m polyfuse serve RUN
--data-root SITE` as a separate process, and sends a bounded number of POST /predict requests
from a few client threads, for 1 and for 32 patients per request (each scan read from disk by
the server through the data root). Prints requests/s, patients/s, p50/p99 latency, the server's
CPU time (its process tree: psutil when installed, else /proc) against the wall time, and the
in-process `Predictor.predict` time of the same rows as the floor without HTTP. Run:

    .venv/bin/python benchmarks/serving.py [--requests 200] [--clients 4] [--workers 1 2]

The clients run on the same machine as the server, so on few cores they compete with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import yaml

EXAMPLE = Path(__file__).parents[1] / "examples" / "own_data"
HOST = "127.0.0.1"
START_SECONDS = 120


def fit_example(folder: Path, epochs: int) -> tuple[Path, Path]:
    from polyfuse.config import load_config
    from polyfuse.training.experiment import run_fit

    site = folder / "site"
    shutil.copytree(EXAMPLE, site)
    config = yaml.safe_load((site / "experiment.yaml").read_text())
    config["training"] |= {"epochs": epochs, "progress": False}
    config["output"] = "runs"
    (site / "experiment.yaml").write_text(yaml.safe_dump(config))
    run, _ = run_fit(load_config(site / "experiment.yaml"))
    return site, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(run: Path, site: Path, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "polyfuse", "serve", str(run), "--data-root", str(site)]
    command += ["--port", str(port), "--workers", str(workers)]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the server did not start in {START_SECONDS} s: {log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (uvicorn's workers)."""
    try:
        import psutil
    except ImportError:
        return _proc_cpu(pid)
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def _proc_cpu(pid: int) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        for task in Path(f"/proc/{p}/task").iterdir():
            children = (task / "children").read_text().split()
            stack += [int(c) for c in children]
    return total


def bodies(site: Path, size: int, count: int) -> list[dict]:
    frame = pd.read_csv(site / "patients.csv", dtype={"patient_id": str}).drop(columns="response")
    records = json.loads(frame.to_json(orient="records"))
    n = len(records)
    return [{"patients": [records[(k * size + j) % n] for j in range(size)]} for k in range(count)]


def load(url: str, payloads: list[dict], clients: int) -> tuple[float, list[float]]:
    """Send every payload once, `clients` at a time; wall seconds and per-request latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    queue = iter(enumerate(payloads))
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=60, trust_env=False) as http:
            while True:
                with lock:
                    item = next(queue, None)
                if item is None:
                    return
                t0 = time.perf_counter()
                answer = http.post(f"{url}/predict", json=item[1])
                took = time.perf_counter() - t0
                with lock:
                    latencies.append(took)
                    if answer.status_code != 200:
                        failures.append(answer.text[:200])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - t0
    if failures or len(latencies) != len(payloads):
        raise SystemExit(f"{len(failures)} failed requests, e.g. {failures[:1]}")
    return wall, latencies


def in_process(run: Path, site: Path, size: int, repeats: int) -> float:
    """Median seconds of `Predictor.predict` on one request's rows (no HTTP, no JSON), in a
    worker thread as the server runs it (on a busy machine, torch's two intra-op threads made
    the main thread's call up to 10× slower than a worker thread's)."""
    from polyfuse.inference.predictor import Predictor

    predictor = Predictor.load(run)
    frame = pd.read_csv(site / "patients.csv", dtype={"patient_id": str}).drop(columns="response")
    rows = frame.iloc[:size]
    times: list[float] = []

    def measure() -> None:
        predictor.predict(rows, root=site)
        for _ in range(repeats):
            t0 = time.perf_counter()
            predictor.predict(rows, root=site)
            times.append(time.perf_counter() - t0)

    thread = threading.Thread(target=measure)
    thread.start()
    thread.join(timeout=600)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per case (bounded)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    if not 1 <= args.requests <= 10_000 or not 1 <= args.clients <= 64:
        raise SystemExit("--requests 1..10000, --clients 1..64")
    import torch

    with tempfile.TemporaryDirectory(prefix="polyfuse-serving-") as tmp:
        site, run = fit_example(Path(tmp), args.epochs)
        print(f"cores: {len(os.sched_getaffinity(0))}, torch threads: {torch.get_num_threads()}")
        print(f"requests per case: {args.requests}, client threads: {args.clients}")
        for size in args.sizes:
            floor = in_process(run, site, size, repeats=50)
            print(f"in-process Predictor.predict, {size} patient(s): {floor * 1e3:.2f} ms (median)")
        header = (
            f"{'workers':>7} {'patients/req':>12} {'req/s':>8} {'patients/s':>10} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'wall s':>7} {'server CPU s':>12}"
        )
        print(header)
        for workers in args.workers:
            process, url = start(run, site, workers, Path(tmp) / f"server{workers}.log")
            try:
                for size in args.sizes:
                    load(url, bodies(site, size, 10), args.clients)  # warm-up
                    payloads = bodies(site, size, args.requests)
                    cpu0 = cpu_seconds(process.pid)
                    wall, latencies = load(url, payloads, args.clients)
                    cpu = cpu_seconds(process.pid) - cpu0
                    n = len(latencies)
                    print(
                        f"{workers:>7} {size:>12} {n / wall:>8.1f} {n * size / wall:>10.1f} "
                        f"{percentile(latencies, 0.5) * 1e3:>8.1f} "
                        f"{percentile(latencies, 0.99) * 1e3:>8.1f} {wall:>7.2f} {cpu:>12.2f}"
                    )
            finally:
                stop(process)


if __name__ == "__main__":
    main()
