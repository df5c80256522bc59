"""Reproducing runs, refusing tampered or mismatched ones, and a run store that survives kills and concurrency."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from nbprod.manifest import IntegrityError, Manifest, SignatureError, VersionMismatchError, sign_manifest
from nbprod.predict import Predictor
from nbprod.runs import STAGING, artifacts, list_runs, new_run_id, read_json, run_table, write_json
from nbprod.sources import load_snapshot
from nbprod.train import predict_frame, split
from test_service import records_of

from house_prices.data import read_raw_csv
from house_prices.train import metrics

from conftest import BIN, house_prices_cli, serving

SMALL = ["-p", "gbm_n_estimators", "60"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_job):
    "A run store with one small finished run (and its data snapshot), trained once for the session."
    d = tmp_path_factory.mktemp("trained")
    run = train_job(gbm_n_estimators=60)
    shutil.copytree(run, d / run.name)
    shutil.copytree(run.parent / ".snapshots", d / ".snapshots")
    return d


@pytest.fixture
def store(trained, tmp_path):
    "A copy of that store (its run and data snapshot) for one test to change as it needs."
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    return tmp_path


def runs_cli(store, *args):
    return house_prices_cli("runs", "--runs-dir", store, *args)


def test_reproduce_in_a_fresh_process(store):
    [run] = list_runs(store)
    r = house_prices_cli("reproduce", "--no-progress", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdict: reproduced, bit-identical" in r.stdout
    for check in ("run files match manifest", "data fingerprint", "held-out rows", "fitted parameters", "diagnostics",
                  "predictions, held-out", "predictions, training", "metrics"):
        assert re.search(rf"{check}\s+ok", r.stdout), (check, r.stdout)
    assert re.search(r"predictions, training\s+ok\s+1314 rows, bit-identical", r.stdout)
    [_, new] = list_runs(store)
    assert read_json(new / "manifest.json")["job"]["reproduces"] == run.name


def copy_run(run):
    "A copy of a finished run under a new id in the same store, to be changed as a test needs."
    other = run.parent / new_run_id()
    shutil.copytree(run, other)
    return other


def record_files(run):
    "Record the run's files' current sha256 (and its folder name as its id) in its manifest and sign it, as if the run had been made so (by the key's owner)."
    m = read_json(run / "manifest.json")
    m["run_id"] = run.name
    m["artifacts"] = {name: a.model_dump() for name, a in artifacts(run).items()}
    write_json(run / "manifest.json", m)
    sign_manifest(run, Manifest.read(run / "manifest.json"))


def linear_model(pipeline):
    return pipeline.steps[1][1].regressor_.estimators_[0]


def test_pickles_that_differ_only_by_memoization_reproduce(store):
    [run] = list_runs(store)
    other = copy_run(run)
    model = joblib.load(run / "model.joblib")
    prep = linear_model(model).steps[0][1]
    name, encoder, columns = prep.transformers_[0]
    prep.transformers_[0] = (name, encoder, ["".join(c) for c in columns])  # equal column names in new objects
    joblib.dump(model, other / "model.joblib")
    record_files(other)
    assert (other / "model.joblib").read_bytes() != (run / "model.joblib").read_bytes()
    r = house_prices_cli("reproduce", run, "--against", other)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"fitted parameters\s+ok", r.stdout), r.stdout
    assert re.search(r"model file\s+note\s+pickle bytes differ although every attribute is equal: pickle memoizes", r.stdout), r.stdout
    assert "verdict: reproduced, bit-identical" in r.stdout


def test_a_changed_coefficient_is_named_and_not_reproduced(store):
    [run] = list_runs(store)
    other = copy_run(run)
    model = joblib.load(run / "model.joblib")
    prep, lasso = linear_model(model).steps[0][1], linear_model(model).steps[-1][1]
    numeric = np.char.startswith(prep.get_feature_names_out().astype(str), "numeric__")  # a number every house has
    j = int(np.argmax(np.where(numeric, np.abs(lasso.coef_), -1)))
    lasso.coef_[j] *= 1.01
    joblib.dump(model, other / "model.joblib")
    m = read_json(run / "manifest.json")  # the changed model's own predictions and metrics, on the run's rows
    df = load_snapshot(m["data"]["fingerprint"], store / ".snapshots")
    train, held_out = split(df, test_size=m["split"]["test_size"], seed=m["split"]["seed"])
    predict_frame(model, held_out).to_csv(other / "predictions.csv", index=False)
    predict_frame(model, train).to_csv(other / "train_predictions.csv", index=False)
    p = pd.read_csv(other / "predictions.csv")
    write_json(other / "metrics.json", metrics(p.SalePrice, p.predicted))
    write_json(other / "manifest.json", {**read_json(other / "manifest.json"), "metrics": read_json(other / "metrics.json")})
    record_files(other)
    r = house_prices_cli("reproduce", run, "--against", other)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"fitted parameters\s+DIFFERS\s+steps\[model\]/regressor_/estimators_\[0\]/steps\[lasso\]\.coef_: "
                     r"1 of \d+ values differ, largest difference", r.stdout), r.stdout
    for rows, n in (("held-out", 146), ("training", 1314)):
        assert re.search(rf"predictions, {rows}\s+DIFFERS\s+\d+ of {n} rows differ, largest relative difference .*beyond 1e-09", r.stdout), r.stdout
    assert re.search(r"metrics\s+DIFFERS", r.stdout) and "verdict: NOT reproduced" in r.stdout


@pytest.mark.parametrize("moved, code, verdict", [(1e-13, 3, "reproduced, numerically equivalent"), (1e-3, 1, "NOT reproduced")])
def test_predictions_moved_by_a_relative_amount(store, moved, code, verdict):
    [run] = list_runs(store)
    other = copy_run(run)
    for name in ("predictions.csv", "train_predictions.csv"):
        p = pd.read_csv(other / name)
        p["predicted"] *= 1 + moved
        p.to_csv(other / name, index=False)
    record_files(other)
    r = house_prices_cli("reproduce", run, "--against", other)
    assert r.returncode == code, r.stdout + r.stderr
    assert re.search(rf"predictions, training\s+{'CLOSE' if code == 3 else 'DIFFERS'}\s+1314 of 1314 rows differ, "
                     rf"largest relative difference {moved:.2g} \(Id \d+: ", r.stdout), r.stdout
    assert f"verdict: {verdict}" in r.stdout
    if code == 3:
        r = house_prices_cli("reproduce", "--strict", run, "--against", other)
        assert r.returncode == 1 and "verdict: NOT reproduced (--strict accepts only bit-identical" in r.stdout


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


def test_a_run_of_another_project_is_refused_by_name(store):
    [run] = list_runs(store)
    m = read_json(run / "manifest.json")
    m["environment"]["packages"]["other-project"] = m["environment"]["packages"].pop("house-prices")
    write_json(run / "manifest.json", m)
    sign_manifest(run, Manifest.read(run / "manifest.json"))  # signed with this host's key: trusted, but not this project's
    with pytest.raises(VersionMismatchError, match=r"was not made by house-prices: it records no version of it \(it was made with other-project\)"):
        Predictor.load(run)


class Payload:
    "A pickle that runs code when it is loaded: it writes a file."
    def __init__(self, path): self.path = str(path)
    def __reduce__(self): return (open, (self.path, "w"))


def test_a_forged_model_with_its_sha256_written_in_is_refused_before_unpickling(store, tmp_path):
    [run] = list_runs(store)
    marker = tmp_path / "code-ran"
    joblib.dump(Payload(marker), run / "model.joblib")
    m = read_json(run / "manifest.json")  # the forger writes the new file's sha256 into the manifest beside it
    m["artifacts"] = {name: a.model_dump() for name, a in artifacts(run).items()}
    write_json(run / "manifest.json", m)
    with pytest.raises(SignatureError, match="does not match its manifest"):
        Predictor.load(run)
    for args in (["predict", "--run", run, BIN.parent.parent / "data/house-prices/test.csv", "-o", store / "out.csv"],
                 ["serve", "--run", run, "--port", "0"], ["reproduce", "--no-progress", run]):
        r = house_prices_cli(*args)
        assert r.returncode == 1 and "does not match its manifest" in r.stdout + r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not marker.exists(), "the forged pickle was loaded"


def test_unsigned_or_otherwise_signed_runs_are_refused_unless_allowed(store, caplog):
    [run] = list_runs(store)
    r = house_prices_cli("predict", "--run", run, BIN.parent.parent / "data/house-prices/test.csv", "-o", store / "out.csv",
                         env={"RUN_SIGNING_KEY": "another key, long enough to be a secret"})
    assert r.returncode == 1 and "was signed with another key" in r.stderr
    (run / "manifest.sig").unlink()
    with pytest.raises(SignatureError, match="is not signed"):
        Predictor.load(run)
    with caplog.at_level("WARNING"):
        assert Predictor.load(run, allow_unsigned=True).run_id == run.name
    assert "is not signed" in caplog.text
    r = house_prices_cli("predict", "--run", run, "--allow-unsigned", BIN.parent.parent / "data/house-prices/test.csv", "-o", store / "out.csv")
    assert r.returncode == 0, r.stderr


def test_damaged_manifest_is_named_and_listed_not_fatal(store):
    [good] = list_runs(store)
    bad = copy_run(good)
    text = (bad / "manifest.json").read_text()
    (bad / "manifest.json").write_text(text[: len(text) // 2])  # cut short, as by a full disk
    r = runs_cli(store, "list")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert re.search(rf"{good.name}\s+complete", r.stdout) and re.search(rf"{bad.name}\s+damaged", r.stdout), r.stdout
    assert f"{bad.name}: " in r.stderr and "is not readable JSON" in r.stderr
    for args in (["predict", "--run", bad, BIN.parent.parent / "data/house-prices/test.csv", "-o", store / "out.csv"],
                 ["serve", "--run", bad, "--port", "0"], ["runs", "--runs-dir", store, "show", bad.name], ["reproduce", "--no-progress", bad]):
        r = house_prices_cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert "manifest.json is not readable JSON" in r.stdout + r.stderr, (args, r.stdout, r.stderr)
    assert not (store / "out.csv").exists()
    m = json.loads(text)
    m["data"]["rows"] = "many"
    (bad / "manifest.json").write_text(json.dumps(m))
    r = house_prices_cli("predict", "--run", bad, BIN.parent.parent / "data/house-prices/test.csv", "-o", store / "out.csv")
    assert r.returncode == 1 and "is not a valid manifest (1 problem(s)): data.rows: Input should be a valid integer" in r.stderr, r.stderr


def test_edited_library_version_is_refused_unless_allowed(store, caplog):
    [run] = list_runs(store)
    m = read_json(run / "manifest.json")
    m["environment"]["packages"]["scikit-learn"] = "1.0.0"
    write_json(run / "manifest.json", m)
    sign_manifest(run, Manifest.read(run / "manifest.json"))  # as the key's owner would: the versions are what is checked here
    with pytest.raises(VersionMismatchError, match=r"scikit-learn 1\.0\.0 in the run, 1\.9\.\d+ here"):
        Predictor.load(run)
    with caplog.at_level("WARNING", logger="house_prices"):
        p = Predictor.load(run, allow_version_mismatch=True)
    assert p.run_id == run.name
    assert "scikit-learn 1.0.0 in the run" in caplog.text and "allow_version_mismatch" in caplog.text



def move_held_out_predictions(run, factor):
    "Multiply the run's recorded held-out predictions by `factor` and re-sign it, as a run made on another machine would record them."
    table = pd.read_csv(run / "predictions.csv")
    table["predicted"] = (table["predicted"] * factor).map(repr)  # every bit kept in the file
    table.to_csv(run / "predictions.csv", index=False)
    record_files(run)
    return len(table)


def test_held_out_predictions_moved_in_their_last_bits_load_as_numerically_equivalent(store, caplog, tmp_path):
    "Another CPU or BLAS kernel: the same model with other last bits loads, says so in one line, /model and /metrics; --strict refuses it."
    [run] = list_runs(store)
    n = move_held_out_predictions(run, 1 + 1e-13)
    with caplog.at_level("WARNING", logger="house_prices"):
        p = Predictor.load(run)
    [line] = [r.getMessage() for r in caplog.records if "numerically equivalent" in r.getMessage()]
    assert re.match(rf"run {run.name} loaded as numerically equivalent: {n} of {n} held-out predictions differ, by at most 1e-13 relative "
                    r"\(row \d+\), within 1e-09; ", line), line
    assert p.agreement.tier == "numerically equivalent" and p.numerics()["differing_rows"] == n
    assert p._fast is not None, p.slow_reason  # the compiled path gives the pipeline's answers here, bit for bit
    assert p.compiled == "the compiled path gives the pipeline's held-out answers bit for bit"
    with pytest.raises(VersionMismatchError, match="numerically equivalent here, not bit-identical .* strict loading accepts only bit-identical"):
        Predictor.load(run, strict=True)
    test_csv = BIN.parent.parent / "data/house-prices/test.csv"
    r = house_prices_cli("predict", "--run", run, test_csv, "-o", tmp_path / "out.csv")
    assert r.returncode == 0 and "loaded as numerically equivalent" in r.stderr and "1459 scored" in r.stdout, r.stdout + r.stderr
    r = house_prices_cli("runs", "--runs-dir", store, "verify", run.name, "--json", tmp_path / "verify.json")
    assert r.returncode == 0 and f"run {run.name} loads here: held-out predictions numerically equivalent" in r.stdout, r.stdout + r.stderr
    assert json.loads((tmp_path / "verify.json").read_text())["numerics"]["tier"] == "numerically equivalent"
    assert house_prices_cli("runs", "--runs-dir", store, "verify", run.name, "--strict").returncode == 1
    r = house_prices_cli("predict", "--strict", "--run", run, test_csv, "-o", tmp_path / "strict.csv")
    assert r.returncode == 1 and "strict loading accepts only bit-identical" in r.stderr and not (tmp_path / "strict.csv").exists()
    with serving(tmp_path / "server.log", "--run", run) as (url, _):
        numerics = httpx.get(url + "/model").json()["numerics"]
        assert numerics["tier"] == "numerically equivalent" and numerics["rtol"] == 1e-9 and 9e-14 < numerics["largest_relative_difference"] < 1.1e-13
        assert httpx.post(url + "/predict", json=records_of(read_raw_csv(test_csv).head(2))).json()["scored"] == 2
        assert f'model_info{{numerics="numerically equivalent",run_id="{run.name}"}} 1.0' in httpx.get(url + "/metrics").text
    assert '"numerics": {"tier": "numerically equivalent"' in (tmp_path / "server.log").read_text()  # the start-up record says it too


def test_held_out_predictions_moved_beyond_the_tolerance_are_refused(store, tmp_path):
    "Moved by 1e-3: refused by load, predict and serve, naming how many rows and by how much; a larger --rtol is the way to accept it."
    [run] = list_runs(store)
    n = move_held_out_predictions(run, 1 + 1e-3)
    with pytest.raises(VersionMismatchError, match=rf"does not reproduce run {run.name}: {n} of {n} held-out predictions differ, "
                                                   r"by at most 0\.001 relative \(row \d+\), beyond 1e-09"):
        Predictor.load(run)
    with pytest.raises(VersionMismatchError, match="does not reproduce"):
        Predictor.load(run, allow_version_mismatch=True)  # the versions are another decision: they do not excuse the numbers
    test_csv = BIN.parent.parent / "data/house-prices/test.csv"
    for args in (["predict", "--run", run, test_csv, "-o", tmp_path / "out.csv"], ["serve", "--run", run, "--port", "0"]):
        r = house_prices_cli(*args)
        assert r.returncode == 1 and f"{n} of {n} held-out predictions differ" in r.stderr and "--rtol" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    r = house_prices_cli("predict", "--rtol", "1e-2", "--run", run, test_csv, "-o", tmp_path / "out.csv")
    assert r.returncode == 0 and "loaded as numerically equivalent" in r.stderr, r.stderr


def test_a_run_made_under_another_python_is_refused_at_load_and_by_reproduce(store):
    "Each Python has its own lock (requirements/3.X/) and wheels: a run made under another one is said so, and refused by default."
    [run] = list_runs(store)
    m = read_json(run / "manifest.json")
    m["environment"]["python"] = "3.99.1"
    write_json(run / "manifest.json", m)
    sign_manifest(run, Manifest.read(run / "manifest.json"))
    with pytest.raises(VersionMismatchError, match=r"Python 3\.99 in the run, 3\.1\d here \(requirements/3\.99/ holds the run's lock\)"):
        Predictor.load(run)
    assert Predictor.load(run, allow_version_mismatch=True).run_id == run.name
    r = house_prices_cli("reproduce", run, "--no-progress")
    assert r.returncode == 1 and re.search(r"Python +DIFFERS +Python 3\.99 in the run, 3\.1\d here", r.stdout), r.stdout
    assert "make PYTHON=python3.99" in r.stdout and "--allow-other-python" in r.stdout and "new run" not in r.stdout
    assert len(list_runs(store)) == 1  # nothing was re-executed

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
    assert row.status == "abandoned"
    r = runs_cli(tmp_path, "list")
    assert r.returncode == 0 and "abandoned" in r.stdout
    r = runs_cli(tmp_path, "clean")  # a dry run: says what it would remove
    assert r.returncode == 0 and f"would remove {row.path}" in r.stdout and row.path.exists()
    r = runs_cli(tmp_path, "clean", "--yes")
    assert r.returncode == 0 and f"removed {row.path}" in r.stdout and not row.path.exists()
    assert run_table(tmp_path) == []


def fitting_job(runs_dir):
    "A `train` command started with a long fit, once its notebook shows the fit cell running."
    proc = subprocess.Popen([str(BIN / "house-prices"), "train", "--no-progress", "-p", "runs_dir", str(runs_dir),
                             "-p", "gbm_n_estimators", "30000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not fitting(runs_dir):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert fitting(runs_dir), "the job never reached the fit cell"
    return proc


def test_sigterm_mid_fit_moves_the_staged_run_to_failed(tmp_path):
    proc = fitting_job(tmp_path)
    proc.send_signal(signal.SIGTERM)  # as a scheduler stops a job: the command cleans up after itself
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err  # the kernel's own log lines go to the run's .kernel.log
    assert list_runs(tmp_path) == [] and not list((tmp_path / STAGING).iterdir())
    [row] = run_table(tmp_path)
    assert row.status == "failed" and (row.path / ".kernel.log").is_file()  # kept for its executed notebook and log, never read as a run


def test_a_stopped_cells_tasks_end_with_the_kernels_shutdown(tmp_path):
    # Stopped mid-cell (SIGTERM, Ctrl-C), the job leaves nbclient's tasks for the cell pending: one polls every second whether
    # the kernel lives. Left pending through the shutdown, it could find the kernel dead and end with an error nobody reads,
    # which asyncio prints with a traceback at exit. The job's kernel manager ends them as it shuts the kernel down.
    import asyncio
    import gc

    import nbformat
    from nbclient import NotebookClient
    from nbprod.config import get_settings
    from nbprod.job import ipc_kernel_manager
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time; time.sleep(60)")])
    client = NotebookClient(nb, kernel_name=get_settings().kernel_name, kernel_manager_class=ipc_kernel_manager(tmp_path))
    unread, cell = [], {}

    async def stopped_mid_cell():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unread.append(context))
        async with client.async_setup_kernel():
            cell["task"] = asyncio.ensure_future(client.async_execute_cell(nb.cells[0], 0))
            await asyncio.sleep(3)  # the cell is running: its reply and the kernel are being polled
            assert not cell["task"].done()
        await asyncio.sleep(1.5)  # the kernel is gone; a poll still pending would have woken by now
        cell["ended"] = cell["task"].done()  # before asyncio.run cancels what is left

    asyncio.run(stopped_mid_cell())
    assert cell["ended"]  # ended with the kernel, its error read (nbclient's DeadKernelError)
    del cell["task"]
    gc.collect()
    assert unread == []


def test_a_kernel_killed_mid_fit_fails_the_job_in_one_line(tmp_path):
    proc = fitting_job(tmp_path)
    [kernel] = (Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())
    os.kill(int(kernel), signal.SIGKILL)  # as the kernel's out-of-memory killer does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err, err
    [row] = run_table(tmp_path)
    assert row.status == "failed" and (row.path / ".kernel.log").is_file() and (row.path / "train.ipynb").is_file()
    cells = json.loads((row.path / "train.ipynb").read_text())["cells"]
    [fit] = [c for c in cells if "fit(train_rows" in "".join(c["source"])]
    before = [c["execution_count"] or 0 for c in cells[:cells.index(fit)] if c["cell_type"] == "code"]
    number = fit["execution_count"] or max(before) + 1  # unset when the kernel died before acknowledging the cell
    assert f"kernel died in cell {number} (killed" in err and str(row.path) in err, err


def test_two_concurrent_jobs_make_two_complete_runs(tmp_path):
    cmd = [str(BIN / "house-prices"), "train", "--no-progress", "-p", "runs_dir", str(tmp_path), *SMALL]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = list_runs(tmp_path)
    assert len(runs) == 2 and runs[0].name != runs[1].name
    for run in runs:
        Predictor.load(run)  # every file matches its manifest
    r = house_prices_cli("reproduce", runs[0], "--against", runs[1])
    assert r.returncode == 0 and "verdict: reproduced, bit-identical" in r.stdout, r.stdout


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
