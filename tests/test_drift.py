"""Drift: every run's reference profile, `house-prices drift` on real and shifted data, the input log of a batch and of the service
under load, and the service's metrics read with Prometheus' own parser."""
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
from nbprod.drift import EXIT_DRIFT, read_profile
from nbprod.inputlog import PART_GLOB, InputLog, read_log
from nbprod.manifest import Manifest
from nbprod.predict import Contract, Predictor
from nbprod.runs import CONTRACT, MANIFEST, PROFILE, read_json
from prometheus_client.parser import text_string_to_metric_families
from test_service import records_of

from house_prices.data import read_raw_csv

from conftest import house_prices_cli, serving

AREAS = ["LotArea", "GrLivArea", "1stFlrSF", "2ndFlrSF", "TotalBsmtSF", "GarageArea"]


@pytest.fixture(scope="module")
def run(train_job):
    return train_job()


def drift(*args):
    return house_prices_cli("drift", "--no-progress", *args)


def test_every_run_records_its_reference_profile(run):
    m = Manifest.read(run / MANIFEST)
    assert PROFILE in m.artifacts and m.artifacts[PROFILE].bytes < 200_000  # small JSON, its sha256 in the signed manifest
    profile, contract = read_profile(run), Contract.of(read_json(run / CONTRACT))
    assert [c.name for c in profile.columns] == [f.name for f in contract.fields]
    assert [c.kind for c in profile.columns] == [f.kind for f in contract.fields]
    assert profile.rows == m.split.train_rows and profile.prediction.rows == m.split.held_out_rows
    lot = profile.columns[[c.name for c in profile.columns].index("LotFrontage")]
    assert 0.1 < lot.missing_rate < 0.25 and sum(lot.counts) + lot.missing == profile.rows and len(lot.counts) == 10
    assert "Reference profile" in (run / "report.html").read_text()  # the report shows it
    no_profile = m.model_copy(update=dict(artifacts={k: v for k, v in m.artifacts.items() if k != PROFILE}))
    with pytest.raises(FileNotFoundError, match="trained before runs recorded a reference profile"):
        read_profile(run, no_profile)


def test_test_csv_against_the_training_rows_flags_nothing(run, settings, tmp_path):
    """test.csv comes from the same population as train.csv: nothing is flagged. Where a measure alone would mislead, the rule does not:
    PoolQC has 3 present values of 1459 in test.csv and 7 of 1314 in training, its PSI is large (> 1) on so few values, and its test is not
    significant: not flagged. The largest missing-rate changes (FireplaceQu 47% -> 50%) stay below 10 points."""
    r = drift("--run", run, settings.test_csv, "--all", "--json", tmp_path / "d.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no drift: none of 79 columns nor the prediction is flagged" in r.stdout
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["rows"] == 1459 and not [c for c in report["columns"] if c["reasons"]] and not report["prediction"]["reasons"]
    pool = next(c for c in report["columns"] if c["name"] == "PoolQC")
    assert pool["psi"] > 1 and pool["test"] is None
    assert max(abs(c["missing_current"] - c["missing_reference"]) for c in report["columns"]) < 0.05


@pytest.fixture(scope="module")
def shifted(settings, tmp_path_factory):
    "test.csv with its areas 1.5 times larger, a quarter of the rows in a neighbourhood never seen, LotFrontage never recorded."
    df = read_raw_csv(settings.test_csv)
    for c in AREAS: df[c] = (pd.to_numeric(df[c]) * 1.5).astype("str")
    df.loc[df.index % 4 == 0, "Neighborhood"] = "Atlantis"
    df["LotFrontage"] = None
    path = tmp_path_factory.mktemp("shifted") / "shifted.parquet"
    df.to_parquet(path)
    return path


def test_a_shifted_sample_flags_exactly_what_was_shifted(run, shifted, tmp_path):
    r = drift("--run", run, shifted, "--report", tmp_path / "drift.html", "--json", tmp_path / "d.json")
    assert r.returncode == EXIT_DRIFT, r.stdout + r.stderr
    report = json.loads((tmp_path / "d.json").read_text())
    flagged = {c["name"]: c["reasons"] for c in report["columns"] if c["reasons"]}
    assert sorted(flagged) == sorted([*AREAS, "Neighborhood", "LotFrontage"]), flagged
    assert flagged["LotFrontage"] == ["missing 17.7% -> 100.0%"] or flagged["LotFrontage"][0].startswith("missing ")
    assert any("25.0% unseen categories ('Atlantis')" in x for x in flagged["Neighborhood"])
    assert all("KS distance" in flagged[c][0] for c in AREAS)
    assert report["prediction"]["reasons"], "larger areas, higher predictions: the prediction is flagged"
    page = (tmp_path / "drift.html").read_text()
    assert page.count("<img") == len(flagged) + 1 and "Atlantis" in page
    assert f"drift: {len(flagged) + 1} of 80 flagged" in r.stdout


def test_thresholds_decide_and_bad_ones_are_refused(run, shifted):
    loose = drift("--run", run, shifted, "--threshold", "missing=1", "--threshold", "unseen=0.5", "--threshold", "p_value=1e-300")
    assert loose.returncode == 0, loose.stdout + loose.stderr  # nothing passes such thresholds
    for bad in ("psi", "psi=x", "speed=1", "missing=2"):
        r = drift("--run", run, shifted, "--threshold", bad)
        assert r.returncode == 2 and "--threshold" in r.stderr, (bad, r.stderr)
    r = drift("--run", run)
    assert r.returncode == 2 and "nothing to compare" in r.stderr
    r = drift("--run", run, shifted, "--since", "2026-01-01")
    assert r.returncode == 2 and "--log" in r.stderr


def test_the_input_log_of_a_batch_compares_as_the_file_does(run, settings, tmp_path):
    log = tmp_path / "log"
    r = house_prices_cli("predict", settings.test_csv, "-o", tmp_path / "out.parquet", "--run", run, "--log-inputs", log,
                         "--log-exclude", "Id", "--log-exclude", "MSZoning", "--allow-errors", "--no-progress", "--chunk-size", "500")
    assert r.returncode == 0, r.stderr
    assert f"input log: 1459 rows written to {log}" in r.stdout
    frames = list(read_log(log))
    logged = pd.concat(frames)
    assert len(logged) == 1459 and "Id" not in logged.columns and "MSZoning" not in logged.columns  # left out: personal data, say
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert np.array_equal(logged.SalePrice.to_numpy(), out.SalePrice.to_numpy(), equal_nan=True)  # the predictions made then
    assert logged.run_id.unique().tolist() == [run.name]
    a, b = (json.loads(p.read_text()) for p in (tmp_path / "f.json", tmp_path / "l.json")) if (
        drift("--run", run, settings.test_csv, "--json", tmp_path / "f.json").returncode == 0 and
        drift("--run", run, "--log", log, "--json", tmp_path / "l.json").returncode == 0) else pytest.fail("drift failed")
    assert b["not_compared"] == ["MSZoning"]
    assert b["columns"] == [c for c in a["columns"] if c["name"] != "MSZoning"] and b["prediction"] == a["prediction"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    r = drift("--run", run, "--log", log, "--until", "2000-01-01")
    assert r.returncode == 1 and "no rows to compare in the input log for those days" in r.stderr
    assert drift("--run", run, "--log", log, "--since", today).returncode == 0


def test_the_input_log_rotates_at_its_bound(run, settings, tmp_path):
    contract = read_json(run / CONTRACT)
    predictor = Predictor.load(run)
    rows = read_raw_csv(settings.test_csv).iloc[:100]
    table = pa.Table.from_pandas(rows, preserve_index=False)
    with InputLog(tmp_path, contract, file_rows=100) as probe: probe.log(predictor.score_table(table), run.name, table=table, block=True)
    one = next(tmp_path.glob(PART_GLOB)).stat().st_size
    bound = 4 * one + one // 2
    with InputLog(tmp_path, contract, file_rows=100, max_bytes=bound) as ilog:
        for _ in range(12): ilog.log(predictor.score_table(table), run.name, table=table, block=True)
    files = list(tmp_path.glob(PART_GLOB))
    assert len(files) == 4 and ilog.removed_files == 9 and ilog.written_rows == 1200 and ilog.dropped_rows == 0
    assert sum(p.stat().st_size for p in files) <= bound
    assert not list(tmp_path.rglob("*.tmp"))


def metrics_of(url):
    "name -> {labels: value} of the counters and gauges (and histogram counts) at /metrics, parsed by Prometheus' own parser."
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_service_under_load_with_the_input_log_on_and_its_metrics(run, settings, tmp_path):
    "Four clients for ten seconds against a real server logging its inputs: every request answered, every record logged or counted as dropped."
    log_dir = tmp_path / "log"
    with serving(tmp_path / "server.log", "--run", run, "--log-inputs", log_dir, "--log-exclude", "Id") as (url, _):  # stopped by SIGTERM after
        records = records_of(read_raw_csv(settings.test_csv))
        stop, sent, lock = time.time() + 10, [], threading.Lock()
        def client(seed):
            rng, mine = random.Random(seed), []
            with httpx.Client(base_url=url, timeout=60) as c:
                while time.time() < stop:
                    batch = rng.sample(records, rng.choice([1, 1, 5, 50]))
                    if rng.random() < 0.2: batch[0] = {**batch[0], "Neighborhood": "Atlantis"}
                    if rng.random() < 0.1: batch[-1] = {**batch[-1], "LotArea": "many"}  # refused: not a number
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
        assert m["model_records_total"] == {(("outcome", "refused"),): refused, (("outcome", "scored"),): n_records - refused}
        assert m["model_record_errors_total"] == {(("field", "LotArea"),): refused}
        assert m["model_unseen_categories_total"][(("field", "Neighborhood"),)] >= sum(1 for s in sent) * 0.1
        assert m["model_info"] == {(("numerics", "bit-identical"), ("run_id", run.name)): 1.0}  # trained and served on this machine
        logged = m["model_input_log_rows_total"]
        dropped = logged[(("outcome", "dropped"),)]
        assert logged[(("outcome", "failed"),)] == 0
    rows = sum(pq.read_metadata(p).num_rows for p in log_dir.glob(PART_GLOB))
    assert rows + dropped == n_records and rows > 0, (rows, dropped, n_records)  # written at shutdown, or counted as dropped
    frame = pd.concat(read_log(log_dir))
    assert "Id" not in frame.columns and (frame.Neighborhood == "Atlantis").any()
    assert frame.error.notna().sum() == refused if dropped == 0 else frame.error.notna().sum() <= refused
    assert frame.error.dropna().str.startswith("LotArea: expected a number").all()
