"""Reproducing runs, refusing tampered or mismatched ones, and a run store that survives kills and concurrency."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from house_prices.manifest import IntegrityError, VersionMismatchError
from house_prices.predict import Predictor
from house_prices.runs import STAGING, list_runs, read_json, run_table, write_json

from conftest import BIN, house_prices_cli

SMALL = ["-p", "gbm_n_estimators", "60"]


@pytest.fixture
def store(tmp_path):
    "A run store with one small finished run."
    r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", tmp_path, *SMALL)
    assert r.returncode == 0, r.stderr
    return tmp_path


def runs_cli(store, *args):
    return house_prices_cli("runs", "--runs-dir", store, *args)


def test_reproduce_in_a_fresh_process(store):
    [run] = list_runs(store)
    r = house_prices_cli("reproduce", "--no-progress", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdict: reproduced" in r.stdout
    for check in ("run files match manifest", "data fingerprint", "held-out rows", "model file", "predictions", "metrics"):
        assert re.search(rf"{check}\s+ok", r.stdout), (check, r.stdout)
    [_, new] = list_runs(store)
    assert read_json(new / "manifest.json")["job"]["reproduces"] == run.name
    assert (new / "model.joblib").read_bytes() == (run / "model.joblib").read_bytes()


def flip_a_byte(path, offset=1000):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_byte_is_refused_at_load_and_by_reproduce(store):
    [run] = list_runs(store)
    flip_a_byte(run / "model.joblib")
    with pytest.raises(IntegrityError, match="changed or corrupted"):
        Predictor.load(run)
    r = house_prices_cli("reproduce", "--no-progress", run)
    assert r.returncode == 1
    assert re.search(r"run files match manifest\s+DIFFERS.*model\.joblib", r.stdout), r.stdout
    assert "verdict: NOT reproduced" in r.stdout
    assert len(list_runs(store)) == 1, "nothing is re-executed for a tampered run"
    r = house_prices_cli("predict", "--run", run, BIN.parent.parent / "data/house-prices/test.csv", "-o", store / "out.csv")
    assert r.returncode == 1 and "changed or corrupted" in r.stderr and not (store / "out.csv").exists()


def test_edited_library_version_is_refused_unless_allowed(store, caplog):
    [run] = list_runs(store)
    m = read_json(run / "manifest.json")
    m["environment"]["packages"]["scikit-learn"] = "1.0.0"
    write_json(run / "manifest.json", m)
    with pytest.raises(VersionMismatchError, match=r"scikit-learn 1\.0\.0 in the run, 1\.9\.\d+ here"):
        Predictor.load(run)
    with caplog.at_level("WARNING", logger="house_prices"):
        p = Predictor.load(run, allow_version_mismatch=True)
    assert p.run_id == run.name
    assert "scikit-learn 1.0.0 in the run" in caplog.text and "allow_version_mismatch" in caplog.text


def test_data_changed_after_the_run_reproduced_from_snapshot_or_explained(tmp_path, settings):
    data = tmp_path / "train.csv"
    lines = settings.train_csv.read_text().splitlines(keepends=True)
    data.write_text("".join(lines))
    r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", tmp_path / "runs", "-p", "data", data, *SMALL)
    assert r.returncode == 0, r.stderr
    [run] = list_runs(tmp_path / "runs")
    data.write_text("".join(lines) + "9999," + lines[-1].split(",", 1)[1])  # one row appended after the run
    r = house_prices_cli("reproduce", "--no-progress", run)  # the run's snapshot still has the data it trained on
    assert r.returncode == 0 and "from the run's snapshot" in r.stdout, r.stdout + r.stderr
    for snap in (tmp_path / "runs" / ".snapshots").iterdir(): snap.unlink()
    r = house_prices_cli("reproduce", "--no-progress", run)  # no snapshot: reload the source, and see it changed
    assert r.returncode == 1
    assert "data fingerprint differs" in r.stdout and "1460 vs 1461 rows" in r.stdout, r.stdout


def fitting(runs_dir):
    "Whether the staged notebook (saved by papermill at every cell) shows the fit cell running."
    for nb in (runs_dir / STAGING).glob("*/train.ipynb"):
        try: cells = json.loads(nb.read_text())["cells"]
        except (ValueError, OSError): continue  # being written
        return any("fit(train_rows" in "".join(c["source"]) and c["metadata"].get("papermill", {}).get("status") == "running"
                   for c in cells)
    return False


def test_sigkill_mid_fit_leaves_no_finished_run(tmp_path):
    proc = subprocess.Popen([str(BIN / "house-prices"), "train", "--no-progress", "-p", "runs_dir", str(tmp_path),
                             "-p", "gbm_n_estimators", "30000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not fitting(tmp_path):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert fitting(tmp_path), "the job never reached the fit cell"
        time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert list_runs(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snapshots", STAGING]  # the data snapshot is complete or absent
    [row] = run_table(tmp_path)
    assert row["status"] == "abandoned"
    r = runs_cli(tmp_path, "list")
    assert r.returncode == 0 and "abandoned" in r.stdout


def test_two_concurrent_jobs_make_two_complete_runs(tmp_path):
    cmd = [str(BIN / "house-prices"), "train", "--no-progress", "-p", "runs_dir", str(tmp_path), *SMALL]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = list_runs(tmp_path)
    assert len(runs) == 2 and runs[0].name != runs[1].name
    for run in runs:
        Predictor.load(run)  # every file matches its manifest
    assert runs[0].joinpath("model.joblib").read_bytes() == runs[1].joinpath("model.joblib").read_bytes()


def test_report_is_self_contained_html_with_plots(train_job):
    html = (train_job() / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert not re.findall(r'(?:src|href)="(https?:[^"]*)"', html), "the report must not fetch anything"
    assert html.count('src="data:image/png;base64,') >= 2  # predictions and model weights
    assert "RMSE" in html or "rmse_log" in html
    assert "fingerprint" in html  # the manifest summary


def test_runs_list_show_and_compare(store):
    [run] = list_runs(store)
    r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", store, *SMALL, "-p", "seed", "3")
    assert r.returncode == 0, r.stderr
    [a, b] = list_runs(store)
    r = runs_cli(store, "list")
    assert r.returncode == 0 and a.name in r.stdout and b.name in r.stdout and r.stdout.count("complete") == 2
    r = runs_cli(store, "show", a.name)
    assert r.returncode == 0 and "fingerprint" in r.stdout and "model.joblib" in r.stdout
    assert json.loads(runs_cli(store, "show", "--json", a.name).stdout)["run_id"] == a.name
    r = runs_cli(store, "compare", a.name, b.name)
    assert r.returncode == 0
    assert "parameters.seed" in r.stdout and "metrics.rmse_log" in r.stdout
    assert "data.fingerprint" not in r.stdout  # same data
    r = runs_cli(store, "show", "nope")
    assert r.returncode == 1 and "no finished run 'nope'" in r.stderr
