"""One-row and batch prediction speed of the newest run's pipeline, as ratios to references measured in the same run.

Usage: .venv/bin/python bench/predict_latency.py [--run RUN] [--repeat N]
Trains a run first when the store is empty. Timings on shared machines are noisy: compare the ratios, not the
milliseconds, between machines.
"""
import argparse
import statistics
import time

import numpy as np

from house_prices.config import get_settings
from house_prices.data import FEATURES, read_csv
from house_prices.predict import Predictor
from house_prices.runs import list_runs, resolve_run


def timeit(fn, repeat):
    "Per-call wall times in milliseconds."
    fn()  # warm up
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(name, ms, ref=None):
    p50, p99 = statistics.median(ms), float(np.percentile(ms, 99))
    ratio = f"{p50 / ref:8.2f}x" if ref else "   (ref)"
    print(f"  {name:<44} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms  {ratio}")
    return p50


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="latest")
    ap.add_argument("--repeat", type=int, default=300)
    a = ap.parse_args()
    s = get_settings()
    if a.run == "latest" and not list_runs(s.runs_dir):
        from house_prices.job import run_training
        print("no run yet: training one")
        run_training({}, settings=s, progress=False)
    run = resolve_run(a.run, s.runs_dir)
    predictor = Predictor.load(run)
    test = read_csv(s.test_csv, target=False)
    row = test.iloc[[0]]
    print(f"run {run.name}, {a.repeat} repeats")
    ref = summary("reference: pipeline.predict, 1 row DataFrame", timeit(lambda: predictor.pipeline.predict(row[FEATURES]), a.repeat))
    summary("Predictor.predict, 1 row", timeit(lambda: predictor.predict(row), a.repeat), ref)
    batch = timeit(lambda: predictor.predict(test), max(5, a.repeat // 30))
    p50 = summary(f"Predictor.predict, test.csv ({len(test)} rows)", batch, ref)
    print(f"  batch throughput: {len(test) / p50 * 1000:,.0f} rows/s (one core)")


if __name__ == "__main__":
    main()
