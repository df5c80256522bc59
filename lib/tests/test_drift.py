"""Drift on a toy run: every run's reference profile, the `drift` command on rows of the same population and on shifted
ones, thresholds, the input log of a batch and of the service under load, and the service's metrics read with
Prometheus' own parser."""
import json
import random
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nbprod.contract import Contract
from nbprod.drift import EXIT_DRIFT, read_profile
from nbprod.inputlog import PART_GLOB, InputLog, read_log
from nbprod.manifest import Manifest
from nbprod.predict import Predictor
from nbprod.runs import CONTRACT, MANIFEST, PROFILE, read_json
from nbprod.schema import read_raw_csv
from nbprod.toy import toy_rows

from toys import cli, records_of, serving, unseen_csv


@pytest.fixture(scope="module")
def run(toy_run):
    return toy_run()


@pytest.fixture(scope="module")
def new_csv(tmp_path_factory):
    "1000 rows of the training rows' population that the run never saw (another seed)."
    return unseen_csv(tmp_path_factory.mktemp("drift"), 1000, seed=7, start=5001)


def drift(*args):
    return cli("drift", "--no-progress", *args)


def test_every_run_records_its_reference_profile(run):
    m = Manifest.read(run / MANIFEST)
    # small JSON, its sha256 in the signed manifest
    assert PROFILE in m.artifacts and m.artifacts[PROFILE].bytes < 200_000
    profile, contract = read_profile(run), Contract.of(read_json(run / CONTRACT))
    assert [c.name for c in profile.columns] == [f.name for f in contract.fields]
    assert [c.kind for c in profile.columns] == [f.kind for f in contract.fields]
    assert profile.rows == m.split.train_rows and profile.prediction.rows == m.split.held_out_rows
    age = profile.columns[[c.name for c in profile.columns].index("age")]  # about a tenth of the ages are unknown
    assert 0.05 < age.missing_rate < 0.2 and sum(age.counts) + age.missing == profile.rows and len(age.counts) == 10
    no_profile = m.model_copy(update=dict(artifacts={k: v for k, v in m.artifacts.items() if k != PROFILE}))
    with pytest.raises(FileNotFoundError, match="trained before runs recorded a reference profile"):
        read_profile(run, no_profile)


def test_rows_of_the_same_population_flag_nothing(run, new_csv, tmp_path):
    """Where a measure alone would mislead, the rule does not: the prediction's reference is the 20 held-out rows, its
    PSI against 1000 new rows is large on so few, and its test is not significant: not flagged."""
    r = drift("--run", run, new_csv, "--all", "--json", tmp_path / "d.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no drift: none of 4 columns nor the prediction is flagged" in r.stdout
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["rows"] == 1000 and not [c for c in report["columns"]
                                           if c["reasons"]] and not report["prediction"]["reasons"]
    assert report["prediction"]["psi"] > 0.25 and report["prediction"]["p_value"] > 0.05
    assert max(abs(c["missing_current"] - c["missing_reference"]) for c in report["columns"]) < 0.05


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """The new rows with their areas 1.5 times larger, a quarter of them in a colour never seen, their ages never
    recorded."""
    df = toy_rows(1000, seed=7, target=False, start=5001)
    df["area"] = df.area * 1.5
    df.loc[df.index % 4 == 0, "colour"] = "mauve"
    df["age"] = None
    path = tmp_path_factory.mktemp("shifted") / "shifted.parquet"
    df.to_parquet(path)
    return path


def test_a_shifted_sample_flags_exactly_what_was_shifted(run, shifted, tmp_path):
    r = drift("--run", run, shifted, "--report", tmp_path / "drift.html", "--json", tmp_path / "d.json")
    assert r.returncode == EXIT_DRIFT, r.stdout + r.stderr
    report = json.loads((tmp_path / "d.json").read_text())
    flagged = {c["name"]: c["reasons"] for c in report["columns"] if c["reasons"]}
    assert sorted(flagged) == ["age", "area", "colour"], flagged
    assert flagged["age"] == [f"missing {100 * report['columns'][1]['missing_reference']:.1f}% -> 100.0%"]
    assert any("unseen categories ('mauve')" in x for x in flagged["colour"])
    assert "KS distance" in flagged["area"][0]
    assert report["prediction"]["reasons"], "larger areas, higher predictions: the prediction is flagged"
    page = (tmp_path / "drift.html").read_text()
    assert page.count("<img") == len(flagged) + 1 and "mauve" in page
    assert "drift: 4 of 5 flagged" in r.stdout


def test_thresholds_decide_and_bad_ones_are_refused(run, shifted):
    loose = drift("--run", run, shifted, "--threshold", "missing=1", "--threshold", "unseen=0.5", "--threshold",
                  "p_value=1e-300")
    assert loose.returncode == 0, loose.stdout + loose.stderr  # nothing passes such thresholds
    for bad in ("psi", "psi=x", "speed=1", "missing=2"):
        r = drift("--run", run, shifted, "--threshold", bad)
        assert r.returncode == 2 and "--threshold" in r.stderr, (bad, r.stderr)
    r = drift("--run", run)
    assert r.returncode == 2 and "nothing to compare" in r.stderr
    r = drift("--run", run, shifted, "--since", "2026-01-01")
    assert r.returncode == 2 and "--log" in r.stderr


def test_the_input_log_of_a_batch_compares_as_the_file_does(run, new_csv, tmp_path):
    log = tmp_path / "log"
    r = cli("predict", new_csv, "-o", tmp_path / "out.parquet", "--run", run, "--log-inputs", log,
            "--log-exclude", "key", "--log-exclude", "colour", "--allow-errors", "--no-progress", "--chunk-size", "300")
    assert r.returncode == 0, r.stderr
    assert f"input log: 1000 rows written to {log}" in r.stdout
    logged = pd.concat(list(read_log(log)))
    # left out: personal data, say
    assert len(logged) == 1000 and "key" not in logged.columns and "colour" not in logged.columns
    out = pd.read_parquet(tmp_path / "out.parquet")
    # the predictions made then
    assert np.array_equal(logged.predicted.to_numpy(), out.predicted.to_numpy(), equal_nan=True)
    assert logged.run_id.unique().tolist() == [run.name]
    assert drift("--run", run, new_csv, "--json", tmp_path / "f.json").returncode == 0
    assert drift("--run", run, "--log", log, "--json", tmp_path / "l.json").returncode == 0
    a, b = (json.loads(p.read_text()) for p in (tmp_path / "f.json", tmp_path / "l.json"))
    assert b["not_compared"] == ["colour"]
    assert b["columns"] == [c for c in a["columns"] if c["name"] != "colour"] and b["prediction"] == a["prediction"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    r = drift("--run", run, "--log", log, "--until", "2000-01-01")
    assert r.returncode == 1 and "no rows to compare in the input log for those days" in r.stderr
    assert drift("--run", run, "--log", log, "--since", today).returncode == 0


def test_the_input_log_rotates_at_its_bound(run, new_csv, tmp_path):
    contract = read_json(run / CONTRACT)
    predictor = Predictor.load(run)
    table = pa.Table.from_pandas(read_raw_csv(new_csv).iloc[:100], preserve_index=False)
    with InputLog(tmp_path, contract, file_rows=100) as probe:
        probe.log(predictor.score_table(table), run.name, table=table, block=True)
    one = next(tmp_path.glob(PART_GLOB)).stat().st_size
    bound = 4 * one + one // 2
    with InputLog(tmp_path, contract, file_rows=100, max_bytes=bound) as ilog:
        for _ in range(12): ilog.log(predictor.score_table(table), run.name, table=table, block=True)
    files = list(tmp_path.glob(PART_GLOB))
    assert len(files) == 4 and ilog.removed_files == 9 and ilog.written_rows == 1200 and ilog.dropped_rows == 0
    assert sum(p.stat().st_size for p in files) <= bound
    assert not list(tmp_path.rglob("*.tmp"))


def metrics_of(url):
    """name -> {labels: value} of the counters and gauges (and histogram counts) at /metrics, parsed by Prometheus' own
    parser."""
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_service_under_load_with_the_input_log_on_and_its_metrics(run, new_csv, tmp_path):
    """Four clients for ten seconds against a real server logging its inputs: every request answered, every record
    logged or counted as dropped."""
    log_dir = tmp_path / "log"
    # stopped by SIGTERM after
    with serving(tmp_path / "server.log", "--run", run, "--log-inputs", log_dir, "--log-exclude", "key") as (url, _):
        records = records_of(read_raw_csv(new_csv))
        stop, sent, lock = time.time() + 10, [], threading.Lock()
        def client(seed):
            rng, mine = random.Random(seed), []
            with httpx.Client(base_url=url, timeout=60) as c:
                while time.time() < stop:
                    batch = rng.sample(records, rng.choice([1, 1, 5, 50]))
                    if rng.random() < 0.2: batch[0] = {**batch[0], "colour": "mauve"}
                    if rng.random() < 0.1: batch[-1] = {**batch[-1], "area": "many"}  # refused: not a number
                    r = c.post("/predict", json=batch)
                    mine.append((r.status_code, len(batch), r.json().get("refused")))
            with lock: sent.extend(mine)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert len(sent) > 100 and all(s == 200 for s, _, _ in sent), sent[:5]
        n_records, refused = sum(n for _, n, _ in sent), sum(k for _, _, k in sent)
        m = metrics_of(url)
        assert m["model_requests_total"][(("route", "/predict"), ("status", "200"))] == len(sent)
        assert m["model_request_duration_seconds_count"][(("route", "/predict"),)] == len(sent)
        assert m["model_records_total"] == {(("outcome", "refused"),): refused,
                                            (("outcome", "scored"),): n_records - refused}
        assert m["model_record_errors_total"] == {(("field", "area"),): refused}
        assert m["model_unseen_categories_total"][(("field", "colour"),)] >= sum(1 for s in sent) * 0.1
        # measured when the model was loaded, on this machine
        numerics = httpx.get(url + "/model").json()["numerics"]["tier"]
        assert m["model_info"] == {(("numerics", numerics), ("run_id", run.name)): 1.0}
        logged = m["model_input_log_rows_total"]
        dropped = logged[(("outcome", "dropped"),)]
        assert logged[(("outcome", "failed"),)] == 0
    rows = sum(pq.read_metadata(p).num_rows for p in log_dir.glob(PART_GLOB))
    # written at shutdown, or counted as dropped
    assert rows + dropped == n_records and rows > 0, (rows, dropped, n_records)
    frame = pd.concat(read_log(log_dir))
    assert "key" not in frame.columns and (frame.colour == "mauve").any()
    assert frame.error.notna().sum() == refused if dropped == 0 else frame.error.notna().sum() <= refused
    assert frame.error.dropna().str.startswith("area: expected a number").all()
