"""Batch scoring on Dask beside the single-process scorer: rows per second and peak memory per worker, on one Parquet file.

    .venv/bin/python bench/dask_speed.py [--run RUN] [--rows 10000000] [--workers 1 2] [--search-iter 4]

Measured in one run, on a Parquet file of `--rows` rows resampled from test.csv (row groups of 500,000 rows):
- the single-process scorer (`score_file`, what `house-prices predict` runs) in a fresh process, the model loaded before
  the clock starts, with its peak resident memory (VmHWM);
- `score_dataset` (what `house-prices predict --engine dask` runs) on a local cluster of 1 and of 2 worker processes,
  the cluster started before the clock starts; the clock includes loading and verifying the model on every worker
  (the worker plugin) and writing one file per partition; peak memory is each worker process's VmHWM.
- the job's hyperparameter search (`nbprod.search`: `--search-iter` candidates of the project's space drawn with seed 0,
  3 folds each, on the training rows of the default data) with joblib on this machine's cores and on a local Dask
  cluster of 2 workers (the cluster's start, its checks and the fits timed together).
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


def batches(a, run, s, tmp, results):
    "The batch figures: the single process, then Dask with each number of workers."
    from nbprod.cluster import dask_client, score_dataset
    t = time.perf_counter()
    resample(s.scoring_file, a.rows, tmp / "rows.csv", tmp / "rows.parquet")
    (tmp / "rows.csv").unlink()
    print(f"run {run.name}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {a.rows:,} rows made in "
          f"{time.perf_counter() - t:.0f} s in {tmp}", flush=True)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="latest")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--search-iter", type=int, default=4, help="candidates of the search (0: skip the search)")
    a = ap.parse_args()
    from nbprod.config import get_settings
    from nbprod.runs import resolve_run
    s = get_settings()
    run = resolve_run(a.run, s.runs_dir)
    tmp = Path(tempfile.mkdtemp(prefix="dask_speed-"))
    results, saved = {}, HERE / "results" / "dask_speed.json"
    if not a.rows:  # the search only: the batch figures of the last run are kept
        previous = json.loads(saved.read_text()) if saved.is_file() else {}
        a.rows, results = previous.get("rows", 0), previous.get("results", {})
    else: batches(a, run, s, tmp, results)
    searches = {}
    if a.search_iter:
        from nbprod.project import get_project
        from nbprod.search import candidates, search
        from nbprod.sources import load
        from nbprod.train import split
        p = get_project()
        train, _ = split(load(p.data_file, s.root), test_size=0.1, seed=0)
        cands = candidates(p.search_space, p.default_params, "random", a.search_iter, 0)
        for engine in ("local", "dask"):
            t = time.perf_counter()
            rec = search(train, cands, p.search_space, "random", folds=3, engine=engine)
            searches[engine] = dict(seconds=time.perf_counter() - t, fits=len(cands) * 3, best=rec.best, means=[c.mean for c in rec.candidates])
            print(f"search, {engine}: {searches[engine]['seconds']:.1f} s for {len(cands) * 3} fits", flush=True)
        assert searches["local"]["means"] == searches["dask"]["means"], "the two searches' scores differ"
    ref = results.get("single process")
    if ref: print(f"\n{'':<26}{'rows/s':>10}{'vs single':>11}  peak RSS per process (MiB)")
    for name, r in results.items():
        rate = r["rows"] / r["seconds"]
        print(f"{name:<26}{rate:>10,.0f}{rate / (ref['rows'] / ref['seconds']):>10.2f}x  {', '.join(f'{p:,.0f}' for p in r['peak_rss_mib'])}")
    if searches:
        print(f"\nsearch, {searches['local']['fits']} fits: local {searches['local']['seconds']:.1f} s, Dask (2 workers) {searches['dask']['seconds']:.1f} s "
              f"({searches['local']['seconds'] / searches['dask']['seconds']:.2f}x); the same scores")
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(json.dumps(dict(run=run.name, rows=a.rows, machine=platform.machine(), cores=os.cpu_count(),
                                                                      results=results, search=searches), indent=2) + "\n")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
