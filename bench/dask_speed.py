"""Batch scoring on Dask beside the single-process scorer: rows per second and peak memory per worker, on one Parquet file.

    .venv/bin/python bench/dask_speed.py [--run RUN] [--rows 10000000] [--workers 1 2]

Measured in one run, on a Parquet file of `--rows` rows resampled from test.csv (row groups of 500,000 rows):
- the single-process scorer (`score_file`, what `house-prices predict` runs) in a fresh process, the model loaded before
  the clock starts, with its peak resident memory (VmHWM);
- `score_dataset` (what `house-prices predict --engine dask` runs) on a local cluster of 1 and of 2 worker processes,
  the cluster started before the clock starts; the clock includes loading and verifying the model on every worker
  (the worker plugin) and writing one file per partition; peak memory is each worker process's VmHWM.
Figures go to stdout and bench/results/dask_speed.json. These machines are shared and noisy: compare the ratios.
"""
import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from predict_speed import batch, resample  # noqa: E402


def vmhwm_mib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="latest")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    from house_prices.core.cluster import dask_client, score_dataset
    from house_prices.core.config import get_settings
    from house_prices.core.runs import resolve_run
    s = get_settings()
    run = resolve_run(a.run, s.runs_dir)
    tmp = Path(tempfile.mkdtemp(prefix="dask_speed-"))
    t = time.perf_counter()
    resample(s.test_csv, a.rows, tmp / "rows.csv", tmp / "rows.parquet")
    (tmp / "rows.csv").unlink()
    print(f"run {run.name}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {a.rows:,} rows made in "
          f"{time.perf_counter() - t:.0f} s in {tmp}", flush=True)
    results = {}
    one = batch(run, tmp / "rows.parquet", tmp / "one.parquet")
    results["single process"] = dict(rows=one["rows"], seconds=one["seconds"], peak_rss_mib=[one["peak_rss_mib"]])
    print(f"single process: {one['rows'] / one['seconds']:,.0f} rows/s, peak {one['peak_rss_mib']:,.0f} MiB", flush=True)
    for w in a.workers:
        out = tmp / f"dask-{w}"
        with dask_client(workers=w) as client:
            t = time.perf_counter()
            summary = score_dataset(client, run, [tmp / "rows.parquet"], out)
            seconds = time.perf_counter() - t
            peaks = sorted(client.run(vmhwm_mib).values())
        results[f"dask, {w} worker(s)"] = dict(rows=summary.rows, seconds=seconds, peak_rss_mib=peaks, files=len(list(out.iterdir())))
        print(f"dask, {w} worker(s): {summary.rows / seconds:,.0f} rows/s, peak per worker {', '.join(f'{p:,.0f}' for p in peaks)} MiB", flush=True)
        shutil.rmtree(out)
    ref = results["single process"]
    print(f"\n{'':<26}{'rows/s':>10}{'vs single':>11}  peak RSS per process (MiB)")
    for name, r in results.items():
        rate = r["rows"] / r["seconds"]
        print(f"{name:<26}{rate:>10,.0f}{rate / (ref['rows'] / ref['seconds']):>10.2f}x  {', '.join(f'{p:,.0f}' for p in r['peak_rss_mib'])}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "dask_speed.json").write_text(json.dumps(dict(run=run.name, rows=a.rows, machine=platform.machine(), cores=os.cpu_count(),
                                                                      results=results), indent=2) + "\n")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
