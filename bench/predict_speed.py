"""Prediction speed of the newest run, in one process run: one-record latency and batch throughput.

    .venv/bin/python bench/predict_speed.py [--run RUN] [--repeat 500] [--rows 1000000]

Measures, with the same model in the same run:
- one record, in process: the raw fitted `pipeline.predict` on a one-row DataFrame (the reference),
  and `Predictor.score` on one record (contract checks included, compiled path);
- one record over HTTP: a real `house-prices serve` on loopback, one keep-alive client;
- batch: `house-prices predict` (a separate process) on test.csv and on a file of `--rows` rows resampled from it,
  rows/s and the peak resident memory of that process.
Machines here are shared and noisy: compare the ratios to the reference, not the milliseconds, across machines.
"""
import argparse
import csv
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from house_prices.core.config import get_settings
from house_prices.data import FEATURES, read_csv
from house_prices.core.predict import Predictor
from house_prices.core.runs import list_runs, resolve_run

BIN = Path(sys.executable).parent


def timings(fn, repeat):
    "Per-call wall times in milliseconds, after a warm-up."
    for _ in range(min(20, repeat)): fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); out.append((time.perf_counter() - t) * 1000)
    return out


def line(name, ms, ref=None):
    p50, p99 = statistics.median(ms), float(np.percentile(ms, 99))
    ratio = f"{ref / p50:7.1f}x faster" if ref else "    reference"
    print(f"  {name:<46} p50 {p50:8.3f} ms  p99 {p99:8.3f} ms  {ratio}")
    return p50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def http_latency(run, record, repeat):
    import httpx
    port = free_port()
    proc = subprocess.Popen([str(BIN / "house-prices"), "serve", "--run", str(run), "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            for _ in range(300):
                try:
                    if c.get("/health").status_code == 200: break
                except httpx.TransportError: time.sleep(0.1)
            return timings(lambda: c.post("/predict", json=record).raise_for_status(), repeat)
    finally:
        proc.terminate(); proc.wait(timeout=30)


def batch(run, path, label):
    out = Path(tempfile.mkdtemp()) / "out.csv"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    r = subprocess.run([str(BIN / "house-prices"), "predict", "--run", str(run), "--no-progress", str(path), "-o", str(out)],
                       capture_output=True, text=True)
    secs = time.perf_counter() - t
    assert r.returncode == 0, r.stderr
    rows = int(r.stdout.split("\n")[1].split()[0])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"  {label:<46} {rows:>9,} rows in {secs:6.1f} s = {rows / secs:9,.0f} rows/s   peak RSS {peak / 1024:6.0f} MiB"
          + ("" if peak > before else " (at most)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="latest")
    ap.add_argument("--repeat", type=int, default=500)
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    s = get_settings()
    if a.run == "latest" and not list_runs(s.runs_dir):
        from house_prices.core.job import run_training
        print("no run yet: training one"); run_training({}, settings=s, progress=False)
    run = resolve_run(a.run, s.runs_dir)
    predictor = Predictor.load(run)
    test = read_csv(s.test_csv, target=False)
    rows = list(csv.DictReader(open(s.test_csv)))
    record = {k: (None if v == "NA" else v) for k, v in rows[0].items()}
    one_row = test.iloc[[0]][FEATURES]
    print(f"run {run.name}; one record = Id {record['Id']}; {a.repeat} repeats; compiled path: {predictor._fast is not None}")
    print("one record")
    ref = line("reference: pipeline.predict, 1-row DataFrame", timings(lambda: predictor.pipeline.predict(one_row), a.repeat))
    line("Predictor.score, 1 record (checks included)", timings(lambda: predictor.score([record]), a.repeat), ref)
    line("HTTP POST /predict, 1 record, keep-alive", http_latency(run, record, a.repeat), ref)
    from house_prices.core.batch import score_file
    out = Path(tempfile.mkdtemp()) / "out.csv"
    secs = statistics.median(timings(lambda: score_file(predictor, s.test_csv, out), 5)) / 1000
    print(f"batch in process (score_file, CSV in and out)\n  {'test.csv':<46} {len(test):>9,} rows in {secs:6.2f} s = {len(test) / secs:9,.0f} rows/s")
    print("batch (house-prices predict as a separate process: start-up, model load and check included; 50,000-row chunks)")
    batch(run, s.test_csv, "test.csv")
    big = Path(tempfile.mkdtemp()) / f"resampled_{a.rows}.csv"
    raw = pd.read_csv(s.test_csv, dtype=str, keep_default_na=False)
    sample = raw.sample(n=a.rows, replace=True, random_state=0)
    sample["Id"] = np.arange(1, a.rows + 1)
    sample.to_csv(big, index=False)
    batch(run, big, f"{a.rows:,} rows resampled from test.csv ({big.stat().st_size / 2**20:.0f} MiB)")
    print("course package, for comparison (quoted, not measured here): 33-44 ms for one row; about 5-6k rows/s in batch")


if __name__ == "__main__":
    main()
