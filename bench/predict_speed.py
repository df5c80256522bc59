"""Prediction speed of a run, in one table: one record in process and over HTTP, batch files of 200k and 10M rows, the course package beside it.

    .venv/bin/python bench/predict_speed.py [--run RUN] [--repeat 500] [--rows 200000] [--big-rows 10000000] [--no-course] [--keep-files]

Measured in one run, with the same model:
- one record: the fitted `pipeline.predict` on a one-row DataFrame (the reference for this part), `Predictor.score`
  on one record (contract checks included), `POST /predict` to a real `house-prices serve` on loopback (one keep-alive
  client), and the course package's `make_prediction` on a one-row DataFrame;
- batch: `score_file` (what `house-prices predict` runs) on CSV and Parquet files resampled from test.csv, each in a
  fresh process (the model loaded and verified before the clock starts; files of up to a million rows: the median of three
  processes), with its CPU time (every thread) and peak resident memory;
  `pipeline.predict` on the canonical frame; the course package on the CSV file; and the model-only floor: the
  fitted estimators alone on their prepared matrices, as the compiled path calls them;
- answer serialisation: FastAPI's encoder (what a `response_model` route does) vs pydantic's `model_dump_json`.
The table goes to stdout, and with its figures to bench/results/predict_speed.json and a plot of rows/s against rows
(predict_speed.png). Machines here are shared and noisy: compare ratios measured in one run, not milliseconds across machines.
"""
import argparse
import atexit
import csv
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def timings(fn, repeat):
    "Per-call wall times in milliseconds, after a warm-up."
    for _ in range(min(20, repeat)): fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); out.append((time.perf_counter() - t) * 1000)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def http_latency(run, record, repeat, *serve_args):
    """Per-request wall times in ms of POST /predict to a real `house-prices serve` on loopback, from a keep-alive client of the standard
    library (a light client: what is measured is mostly the server)."""
    import http.client
    port = free_port()
    proc = subprocess.Popen([str(BIN / "house-prices"), "serve", "--run", str(run), "--port", str(port), "--log-level", "warning", *serve_args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(600):
            try:
                conn.request("GET", "/health"); r = conn.getresponse(); r.read()
                if r.status == 200: break
            except OSError: conn.close(); time.sleep(0.1)
        body, headers = json.dumps(record).encode(), {"content-type": "application/json"}
        def post():
            conn.request("POST", "/predict", body, headers)
            r = conn.getresponse(); r.read()
            assert r.status == 200, r.status
        return timings(post, repeat)
    finally:
        proc.terminate(); proc.wait(timeout=30)


def resample(test_csv, rows, out_csv, out_parquet):
    "A CSV (unquoted, as test.csv) and a Parquet file of `rows` rows drawn from test.csv (with replacement, seed 0), values as text, Ids 1..rows."
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq
    header = next(csv.reader(open(test_csv)))
    src = pa_csv.read_csv(test_csv, convert_options=pa_csv.ConvertOptions(column_types={c: pa.string() for c in header}, null_values=["NA", ""],
                                                                            strings_can_be_null=True))  # missing: null in Parquet, empty in CSV
    rng, step = np.random.default_rng(0), 500_000
    with pa_csv.CSVWriter(out_csv, src.schema, write_options=pa_csv.WriteOptions(quoting_style="none")) as w_csv, \
         pq.ParquetWriter(out_parquet, src.schema) as w_pq:
        for start in range(0, rows, step):
            n = min(step, rows - start)
            part = src.take(rng.integers(0, src.num_rows, n))
            part = part.set_column(header.index("Id"), "Id", pa.array(np.arange(start + 1, start + n + 1).astype(str)))
            w_csv.write_table(part); w_pq.write_table(part)


def worker(run, path, out):
    "In a fresh process: load the run, then time `score_file` alone; print wall and CPU seconds and this process's peak RSS."
    from nbprod.batch import keep_heap, score_file
    from nbprod.predict import Predictor
    keep_heap()  # as `house-prices predict` does
    predictor = Predictor.load(run)
    wall, cpu = time.perf_counter(), time.process_time()
    summary = score_file(predictor, path, out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # the peak of this program's own memory (VmHWM): ru_maxrss would carry the parent's peak over fork and exec
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
    print(json.dumps(dict(rows=summary.rows, refused=summary.failed, seconds=wall, cpu_seconds=cpu, peak_rss_mib=peak,
                          compiled=predictor._fast is not None)))


def batch(run, path, out):
    r = subprocess.run([sys.executable, __file__, "--worker", str(run), str(path), str(out)], capture_output=True, text=True)
    if r.returncode: raise SystemExit(f"scoring {path} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def leaves(est, X):
    "(final estimator, its input matrix) for every model inside a fitted pipeline, blend or target transformer, given its input X."
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import VotingRegressor
    from sklearn.pipeline import Pipeline
    if isinstance(est, Pipeline):
        for _, step in est.steps[:-1]: X = step.transform(X)
        return leaves(est.steps[-1][1], X)
    if isinstance(est, TransformedTargetRegressor): return leaves(est.regressor_, X)
    if isinstance(est, VotingRegressor): return [leaf for e in est.estimators_ for leaf in leaves(e, X)]
    return [(est, X)]


def model_floor(pipeline, frame):
    "Seconds the fitted estimators alone take on their prepared matrices, in blocks of BLOCK_ROWS rows as the compiled path calls them."
    from nbprod.fastpath import BLOCK_ROWS, _final
    total = 0.0
    for est, X in leaves(pipeline, frame):
        dtype, predict, order, _ = _final(est)  # (the fourth: the estimator's own arithmetic, if any)
        X = np.asarray(X, dtype=dtype, order=order)
        t = time.perf_counter()
        for i in range(0, len(X), BLOCK_ROWS): predict(X[i:i + BLOCK_ROWS])
        total += time.perf_counter() - t
    return total


def serialisation(predictor, record, repeat):
    "ms per answer for one record: FastAPI's jsonable_encoder + json.dumps (a response_model route) vs pydantic's model_dump_json."
    from fastapi.encoders import jsonable_encoder
    from nbprod.service import service_models
    M = service_models(predictor.contract)
    s = predictor.score([record])
    answer = M.PredictResponse(run_id=predictor.run_id, scored=1, refused=0, predictions=[M.Prediction(record=0, prediction=float(s.predictions[0]))])
    out = {"FastAPI jsonable_encoder + json.dumps": statistics.median(timings(lambda: json.dumps(jsonable_encoder(answer, by_alias=True)), repeat)),
           "pydantic model_dump_json": statistics.median(timings(lambda: answer.model_dump_json(by_alias=True), repeat))}
    try:
        import orjson
        out["orjson.dumps(model_dump)"] = statistics.median(timings(lambda: orjson.dumps(answer.model_dump(by_alias=True)), repeat))
    except ImportError: pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="latest")
    ap.add_argument("--repeat", type=int, default=500)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--big-rows", type=int, default=10_000_000, help="0 to skip the large files")
    ap.add_argument("--no-course", action="store_true", help="skip the course package (it needs PyPI once, to build its environment)")
    ap.add_argument("--keep-files", action="store_true", help="keep the resampled input files (several GB at 10M rows) in the temporary folder")
    ap.add_argument("--worker", nargs=3, metavar=("RUN", "INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(*a.worker)

    from nbprod.config import get_settings
    from nbprod.predict import Predictor
    from nbprod.runs import list_runs, resolve_run

    from house_prices.data import FEATURES, read_csv
    s = get_settings()
    if a.run == "latest" and not list_runs(s.runs_dir):
        from nbprod.job import run_training
        print("no run yet: training one"); run_training({}, settings=s, progress=False)
    run = resolve_run(a.run, s.runs_dir)
    predictor = Predictor.load(run)
    record = {k: (None if v == "NA" else v) for k, v in next(csv.DictReader(open(s.scoring_file))).items()}
    test = read_csv(s.scoring_file, target=False)
    one_row = test.iloc[[0]][FEATURES]
    tmp = Path(tempfile.mkdtemp(prefix="predict_speed-"))
    if not a.keep_files: atexit.register(shutil.rmtree, tmp, True)  # gone at the end, failure or not
    print(f"run {run.name}; compiled path: {predictor._fast is not None}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; files in {tmp}", flush=True)

    one = {"pipeline.predict, one-row DataFrame": statistics.median(timings(lambda: predictor.pipeline.predict(one_row), a.repeat)),
           "Predictor.score, one record (checks included)": statistics.median(timings(lambda: predictor.score([record]), a.repeat)),
           "HTTP POST /predict, one record, keep-alive": statistics.median(http_latency(run, record, a.repeat)),
           "HTTP POST /predict, one record, keep-alive, input log on": statistics.median(
               http_latency(run, record, a.repeat, "--log-inputs", str(tmp / "input-log")))}
    course = None
    if not a.no_course:
        sys.path.insert(0, str(HERE))
        import course_package
        why = course_package.build()
        if why: print(f"course package skipped: {why}")
        else: course = {"why": None}

    sizes = [n for n in (a.rows, a.big_rows) if n]
    files = {}
    for n in sizes:
        files[n] = (tmp / f"rows_{n}.csv", tmp / f"rows_{n}.parquet")
        t = time.perf_counter(); resample(s.scoring_file, n, *files[n])
        print(f"made {n:,} rows ({files[n][0].stat().st_size / 2**20:,.0f} MiB of CSV) in {time.perf_counter() - t:.0f} s", flush=True)
    if course is not None:
        r = subprocess.run([str(course_package.ENV / "bin" / "python"), str(HERE / "course_package.py"), "--measure", str(s.scoring_file),
                            str(files[a.rows][0]), "--repeat", str(min(a.repeat, 50))], capture_output=True, text=True)
        if r.returncode: print(f"course package skipped: it failed: {r.stderr.strip().splitlines()[-1]}"); course = None
        else: course = json.loads(r.stdout); one["course package make_prediction, one-row DataFrame"] = course["one_row_ms"]

    batch_rows = {}
    canon = test[FEATURES].sample(a.rows, replace=True, random_state=0).reset_index(drop=True)
    t = time.perf_counter(); predictor.pipeline.predict(canon)
    batch_rows[f"pipeline.predict, canonical frame, {a.rows:,} rows"] = dict(rows=a.rows, seconds=time.perf_counter() - t)
    batch_rows[f"model-only floor: the fitted estimators on their matrices, {a.rows:,} rows"] = dict(rows=a.rows, seconds=model_floor(predictor.pipeline, canon))
    if course is not None:
        b = course["batch"][0]
        batch_rows[f"course package make_prediction, CSV, {a.rows:,} rows"] = dict(rows=b["rows"], seconds=b["seconds"], answered=b["answered"])
    for n in sizes:
        for kind, path in zip(("CSV", "Parquet"), files[n]):
            times = 3 if n <= 1_000_000 else 1  # a few seconds' work is noisy here: the median of three fresh processes
            runs = sorted((batch(run, path, tmp / f"out_{n}{path.suffix}") for _ in range(times)), key=lambda r: r["seconds"])
            r = runs[len(runs) // 2]
            batch_rows[f"score_file (house-prices predict), {kind} in and out, {n:,} rows"] = r
            print(f"scored {n:,} rows of {kind} in {r['seconds']:.1f} s" + (f" (median of {times})" if times > 1 else ""), flush=True)
            (tmp / f"out_{n}{path.suffix}").unlink()
    ser = serialisation(predictor, record, a.repeat)

    ref_one = one["pipeline.predict, one-row DataFrame"]
    course_rate = (lambda b: b["rows"] / b["seconds"])(course["batch"][0]) if course else None
    print("\none record                                                       p50 ms   vs pipeline.predict")
    for name, ms in one.items(): print(f"  {name:<60} {ms:8.3f}   {ref_one / ms:6.1f}x")
    print("\nbatch (model load excluded)                                             rows/s  CPU s  rows/CPU s  peak RSS   vs course   vs floor")
    floor = next(v["rows"] / v["seconds"] for k, v in batch_rows.items() if k.startswith("model-only"))
    for name, r in batch_rows.items():
        rate = r["rows"] / r["seconds"]
        extra = f"{r['cpu_seconds']:6.1f} {r['rows'] / r['cpu_seconds']:11,.0f} {r['peak_rss_mib']:6.0f} MiB" if "cpu_seconds" in r else " " * 29  # CPU s: every thread
        vs_course = f"{rate / course_rate:8.1f}x" if course_rate else "       -"
        note = f"  (answered {r['answered']:,} of {r['rows']:,})" if "answered" in r else ""
        print(f"  {name:<68} {rate:9,.0f} {extra} {vs_course} {rate / floor:8.2f}x{note}")
    print("\nanswer serialisation, one record                                 ms")
    for name, ms in ser.items(): print(f"  {name:<60} {ms:8.4f}")

    results = HERE / "results"; results.mkdir(exist_ok=True)
    (results / "predict_speed.json").write_text(json.dumps(dict(
        run=run.name, machine=dict(processor=platform.processor() or platform.machine(), cores=os.cpu_count()),
        when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), one_record_ms=one, batch=batch_rows, serialisation_ms=ser), indent=1) + "\n")
    import matplotlib.pyplot as plt
    plt.switch_backend("Agg")  # no display needed
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind in ("CSV", "Parquet"):
        pts = [(r["rows"], r["rows"] / r["seconds"]) for k, r in batch_rows.items() if k.startswith("score_file") and f" {kind} " in k]
        ax.plot(*zip(*pts), "o-", label=f"score_file, {kind}")
    for k, r in batch_rows.items():
        if not k.startswith("score_file"): ax.plot([r["rows"]], [r["rows"] / r["seconds"]], "s", label=k.split(",")[0])
    ax.set(xscale="log", yscale="log", xlabel="rows", ylabel="rows/s", title=f"Batch scoring, run {run.name}")
    ax.legend(fontsize=7); fig.tight_layout(); fig.savefig(results / "predict_speed.png", dpi=110)
    print(f"\nwritten: {results / 'predict_speed.json'}, {results / 'predict_speed.png'}")


if __name__ == "__main__":
    main()
