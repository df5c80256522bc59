"""Reproducing a toy run and refusing tampered or mismatched ones: `reproduce` in a fresh process, pickles equal but for
memoization, a changed coefficient, predictions moved by a relative amount, flipped bytes, forged and unsigned runs,
damaged manifests, other library versions and Pythons, data changed after the run, two jobs at once, and the run
store's commands. All through the real command (`python -m nbprod.cli`) on runs of the toy's real job."""
import json
import re
import shutil
import subprocess
import sys

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from nbprod.environment import VersionMismatchError
from nbprod.integrity import IntegrityError, SignatureError, sign_manifest
from nbprod.manifest import Manifest
from nbprod.predict import Predictor
from nbprod.runs import artifacts, list_runs, new_run_id, read_json, write_json
from nbprod.schema import read_raw_csv
from nbprod.sources import load_snapshot
from nbprod.toy import toy_project
from nbprod.train import predict_frame, split

from toys import cli, records_of, serving, unseen_csv

REPRODUCED = "verdict: reproduced"  # bit-identical or numerically equivalent: the toy's ridge sums through BLAS


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_run):
    "A run store with one finished toy run (and its data snapshot)."
    d = tmp_path_factory.mktemp("trained")
    run = toy_run()
    shutil.copytree(run, d / run.name)
    shutil.copytree(run.parent / ".snapshots", d / ".snapshots")
    return d


@pytest.fixture
def store(trained, tmp_path):
    "A copy of that store (its run and data snapshot) for one test to change as it needs."
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    return tmp_path


@pytest.fixture(scope="module")
def new_csv(tmp_path_factory):
    "300 rows the run never saw."
    return unseen_csv(tmp_path_factory.mktemp("new"), 300, seed=5, start=5001)


def runs_cli(store, *args):
    return cli("runs", "--runs-dir", store, *args)


def test_reproduce_in_a_fresh_process(store):
    [run] = list_runs(store)
    r = cli("reproduce", "--no-progress", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert REPRODUCED in r.stdout
    for check in ("run files match manifest", "data fingerprint", "held-out rows", "fitted parameters", "diagnostics",
                  "predictions, held-out", "predictions, training", "metrics"):
        assert re.search(rf"{check}\s+ok", r.stdout), (check, r.stdout)
    assert re.search(r"predictions, training\s+ok\s+180 rows, ", r.stdout)
    [_, new] = list_runs(store)
    assert read_json(new / "manifest.json")["job"]["reproduces"] == run.name


def copy_run(run):
    "A copy of a finished run under a new id in the same store, to be changed as a test needs."
    other = run.parent / new_run_id()
    shutil.copytree(run, other)
    return other


def record_files(run):
    """Record the run's files' current sha256 (and its folder name as its id) in its manifest and sign it, as if the run
    had been made so (by the key's owner)."""
    m = read_json(run / "manifest.json")
    m["run_id"] = run.name
    m["artifacts"] = {name: a.model_dump() for name, a in artifacts(run).items()}
    write_json(run / "manifest.json", m)
    sign_manifest(run, Manifest.read(run / "manifest.json"))


def test_pickles_that_differ_only_by_memoization_reproduce(store):
    [run] = list_runs(store)
    other = copy_run(run)
    model = joblib.load(run / "model.joblib")
    prep = model.steps[0][1]
    name, encoder, columns = prep.transformers_[0]
    prep.transformers_[0] = (name, encoder, ["".join(c) for c in columns])  # equal column names in new objects
    joblib.dump(model, other / "model.joblib")
    record_files(other)
    assert (other / "model.joblib").read_bytes() != (run / "model.joblib").read_bytes()
    r = cli("reproduce", run, "--against", other)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"fitted parameters\s+ok", r.stdout), r.stdout
    assert re.search(r"model file\s+note\s+pickle bytes differ although every attribute is equal: pickle memoizes",
                     r.stdout), r.stdout
    assert REPRODUCED in r.stdout


def test_a_changed_coefficient_is_named_and_not_reproduced(store):
    [run] = list_runs(store)
    other = copy_run(run)
    model = joblib.load(run / "model.joblib")
    prep, ridge = model.steps[0][1], model.steps[-1][1]
    numeric = np.char.startswith(prep.get_feature_names_out().astype(str), "numeric__")  # a number every row has
    j = int(np.argmax(np.where(numeric, np.abs(ridge.coef_), -1)))
    ridge.coef_[j] *= 1.01
    joblib.dump(model, other / "model.joblib")
    m = read_json(run / "manifest.json")  # the changed model's own predictions and metrics, on the run's rows
    df = load_snapshot(m["data"]["fingerprint"], store / ".snapshots")
    train, held_out = split(df, test_size=m["split"]["test_size"], seed=m["split"]["seed"])
    predict_frame(model, held_out).to_csv(other / "predictions.csv", index=False)
    predict_frame(model, train).to_csv(other / "train_predictions.csv", index=False)
    p = pd.read_csv(other / "predictions.csv")
    write_json(other / "metrics.json", toy_project().evaluate(p.y, p.predicted))
    write_json(other / "manifest.json", {**read_json(other / "manifest.json"),
                                         "metrics": read_json(other / "metrics.json")})
    record_files(other)
    r = cli("reproduce", run, "--against", other)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"fitted parameters\s+DIFFERS\s+steps\[model\]\.coef_: "
                     r"1 of \d+ values differ, largest difference", r.stdout), r.stdout
    for rows, n in (("held-out", 20), ("training", 180)):
        assert re.search(rf"predictions, {rows}\s+DIFFERS\s+\d+ of {n} rows differ, largest relative difference "
                         r".*beyond 1e-09", r.stdout), r.stdout
    assert re.search(r"metrics\s+DIFFERS", r.stdout) and "verdict: NOT reproduced" in r.stdout


@pytest.mark.parametrize("moved, code, verdict",
                         [(1e-13, 3, "reproduced, numerically equivalent"), (1e-3, 1, "NOT reproduced")])
def test_predictions_moved_by_a_relative_amount(store, moved, code, verdict):
    [run] = list_runs(store)
    other = copy_run(run)
    for name in ("predictions.csv", "train_predictions.csv"):
        p = pd.read_csv(other / name)
        p["predicted"] *= 1 + moved
        p.to_csv(other / name, index=False)
    record_files(other)
    r = cli("reproduce", run, "--against", other)
    assert r.returncode == code, r.stdout + r.stderr
    assert re.search(rf"predictions, training\s+{'CLOSE' if code == 3 else 'DIFFERS'}\s+180 of 180 rows differ, "
                     rf"largest relative difference {moved:.2g} \(key \d+: ", r.stdout), r.stdout
    assert f"verdict: {verdict}" in r.stdout
    if code == 3:
        r = cli("reproduce", "--strict", run, "--against", other)
        assert r.returncode == 1 and "verdict: NOT reproduced (--strict accepts only bit-identical" in r.stdout


def flip_a_byte(path, offset=1000):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_byte_is_refused_at_load_and_by_reproduce(store, new_csv):
    [run] = list_runs(store)
    flip_a_byte(run / "model.joblib")
    with pytest.raises(IntegrityError, match="changed or corrupted"):
        Predictor.load(run)
    r = cli("reproduce", "--no-progress", run)
    assert r.returncode == 1
    assert re.search(r"run files match manifest\s+DIFFERS.*model\.joblib", r.stdout), r.stdout
    assert "verdict: NOT reproduced" in r.stdout
    assert len(list_runs(store)) == 1, "nothing is re-executed for a tampered run"
    r = cli("predict", "--run", run, new_csv, "-o", store / "out.csv")
    assert r.returncode == 1 and "changed or corrupted" in r.stderr and not (store / "out.csv").exists()


def test_a_run_of_another_project_is_refused_by_name(store):
    [run] = list_runs(store)
    m = read_json(run / "manifest.json")
    m["environment"]["packages"].pop("toy-regression")  # the toy is not installed: it records its name with no version
    m["environment"]["packages"]["other-project"] = "1.0"
    write_json(run / "manifest.json", m)
    # signed with this host's key: trusted, but not this project's
    sign_manifest(run, Manifest.read(run / "manifest.json"))
    with pytest.raises(VersionMismatchError, match=r"was not made by toy-regression: it records no version of it \(it "
                                                   r"was made with other-project\)"):
        Predictor.load(run)


class Payload:
    "A pickle that runs code when it is loaded: it writes a file."
    def __init__(self, path): self.path = str(path)
    def __reduce__(self): return (open, (self.path, "w"))


def test_a_forged_model_with_its_sha256_written_in_is_refused_before_unpickling(store, tmp_path, new_csv):
    [run] = list_runs(store)
    marker = tmp_path / "code-ran"
    joblib.dump(Payload(marker), run / "model.joblib")
    m = read_json(run / "manifest.json")  # the forger writes the new file's sha256 into the manifest beside it
    m["artifacts"] = {name: a.model_dump() for name, a in artifacts(run).items()}
    write_json(run / "manifest.json", m)
    with pytest.raises(SignatureError, match="does not match its manifest"):
        Predictor.load(run)
    for args in (["predict", "--run", run, new_csv, "-o", store / "out.csv"],
                 ["serve", "--run", run, "--port", "0"], ["reproduce", "--no-progress", run]):
        r = cli(*args)
        assert (r.returncode == 1 and "does not match its manifest" in r.stdout + r.stderr
                and "Traceback" not in r.stderr), (args, r.stderr)
    assert not marker.exists(), "the forged pickle was loaded"


def test_unsigned_or_otherwise_signed_runs_are_refused_unless_allowed(store, caplog, new_csv):
    [run] = list_runs(store)
    r = cli("predict", "--run", run, new_csv, "-o", store / "out.csv",
                         env={"RUN_SIGNING_KEY": "another key, long enough to be a secret"})
    assert r.returncode == 1 and "was signed with another key" in r.stderr
    (run / "manifest.sig").unlink()
    with pytest.raises(SignatureError, match="is not signed"):
        Predictor.load(run)
    with caplog.at_level("WARNING"):
        assert Predictor.load(run, allow_unsigned=True).run_id == run.name
    assert "is not signed" in caplog.text
    r = cli("predict", "--run", run, "--allow-unsigned", new_csv, "-o", store / "out.csv")
    assert r.returncode == 0, r.stderr


def test_damaged_manifest_is_named_and_listed_not_fatal(store, new_csv):
    [good] = list_runs(store)
    bad = copy_run(good)
    text = (bad / "manifest.json").read_text()
    (bad / "manifest.json").write_text(text[: len(text) // 2])  # cut short, as by a full disk
    r = runs_cli(store, "list")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert re.search(rf"{good.name}\s+complete", r.stdout) and re.search(rf"{bad.name}\s+damaged", r.stdout), r.stdout
    assert f"{bad.name}: " in r.stderr and "is not readable JSON" in r.stderr
    for args in (["predict", "--run", bad, new_csv, "-o", store / "out.csv"],
                 ["serve", "--run", bad, "--port", "0"], ["runs", "--runs-dir", store, "show", bad.name],
                 ["reproduce", "--no-progress", bad]):
        r = cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert "manifest.json is not readable JSON" in r.stdout + r.stderr, (args, r.stdout, r.stderr)
    assert not (store / "out.csv").exists()
    m = json.loads(text)
    m["data"]["rows"] = "many"
    (bad / "manifest.json").write_text(json.dumps(m))
    r = cli("predict", "--run", bad, new_csv, "-o", store / "out.csv")
    assert (r.returncode == 1 and "is not a valid manifest (1 problem(s)): data.rows: Input should be a valid "
                                  "integer" in r.stderr), r.stderr


def test_edited_library_version_is_refused_unless_allowed(store, caplog):
    [run] = list_runs(store)
    m = read_json(run / "manifest.json")
    m["environment"]["packages"]["scikit-learn"] = "1.0.0"
    write_json(run / "manifest.json", m)
    # as the key's owner would: the versions are what is checked here
    sign_manifest(run, Manifest.read(run / "manifest.json"))
    with pytest.raises(VersionMismatchError, match=r"scikit-learn 1\.0\.0 in the run, 1\.9\.\d+ here"):
        Predictor.load(run)
    with caplog.at_level("WARNING"):
        p = Predictor.load(run, allow_version_mismatch=True)
    assert p.run_id == run.name
    assert "scikit-learn 1.0.0 in the run" in caplog.text and "allow_version_mismatch" in caplog.text



def move_held_out_predictions(run, factor):
    """Multiply the run's recorded held-out predictions by `factor` and re-sign it, as a run made on another machine
    would record them."""
    table = pd.read_csv(run / "predictions.csv")
    table["predicted"] = (table["predicted"] * factor).map(repr)  # every bit kept in the file
    table.to_csv(run / "predictions.csv", index=False)
    record_files(run)
    return len(table)


def test_held_out_predictions_moved_in_their_last_bits_load_as_numerically_equivalent(store, caplog, tmp_path, new_csv):
    """Another CPU or BLAS kernel: the same model with other last bits loads, says so in one line, /model and /metrics;
    --strict refuses it."""
    [run] = list_runs(store)
    n = move_held_out_predictions(run, 1 + 1e-13)
    with caplog.at_level("WARNING"):
        p = Predictor.load(run)
    [line] = [r.getMessage() for r in caplog.records if "numerically equivalent" in r.getMessage()]
    assert re.match(rf"run {run.name} loaded as numerically equivalent: {n} of {n} held-out predictions differ, by at "
                    r"most 1e-13 relative "
                    r"\(row \d+\), within 1e-09; ", line), line
    assert p.agreement.tier == "numerically equivalent" and p.numerics()["differing_rows"] == n
    assert p._fast is not None, p.slow_reason  # the compiled path gives the pipeline's answers here (within RTOL: BLAS)
    assert p.compiled.startswith("the compiled path gives the pipeline's held-out answers"), p.compiled
    with pytest.raises(VersionMismatchError, match="numerically equivalent here, not bit-identical .* strict loading "
                                                   "accepts only bit-identical"):
        Predictor.load(run, strict=True)
    r = cli("predict", "--run", run, new_csv, "-o", tmp_path / "out.csv")
    assert (r.returncode == 0 and "loaded as numerically equivalent" in r.stderr
            and "300 scored" in r.stdout), r.stdout + r.stderr
    r = cli("runs", "--runs-dir", store, "verify", run.name, "--json", tmp_path / "verify.json")
    assert (r.returncode == 0 and f"run {run.name} loads here: held-out predictions numerically "
                                  "equivalent" in r.stdout), r.stdout + r.stderr
    assert json.loads((tmp_path / "verify.json").read_text())["numerics"]["tier"] == "numerically equivalent"
    assert cli("runs", "--runs-dir", store, "verify", run.name, "--strict").returncode == 1
    r = cli("predict", "--strict", "--run", run, new_csv, "-o", tmp_path / "strict.csv")
    assert (r.returncode == 1 and "strict loading accepts only bit-identical" in r.stderr
            and not (tmp_path / "strict.csv").exists())
    with serving(tmp_path / "server.log", "--run", run) as (url, _):
        numerics = httpx.get(url + "/model").json()["numerics"]
        assert (numerics["tier"] == "numerically equivalent" and numerics["rtol"] == 1e-9
                and 9e-14 < numerics["largest_relative_difference"] < 1.1e-13)
        assert httpx.post(url + "/predict", json=records_of(read_raw_csv(new_csv).head(2))).json()["scored"] == 2
        assert f'model_info{{numerics="numerically equivalent",run_id="{run.name}"}} 1.0' in httpx.get(url
            + "/metrics").text
    # the start-up record says it too
    assert '"numerics": {"tier": "numerically equivalent"' in (tmp_path / "server.log").read_text()


def test_held_out_predictions_moved_beyond_the_tolerance_are_refused(store, tmp_path, new_csv):
    """Moved by 1e-3: refused by load, predict and serve, naming how many rows and by how much; a larger --rtol is the
    way to accept it."""
    [run] = list_runs(store)
    n = move_held_out_predictions(run, 1 + 1e-3)
    with pytest.raises(VersionMismatchError,
                       match=rf"does not reproduce run {run.name}: {n} of {n} held-out predictions differ, by at most "
                                                   r"0\.001 relative \(row \d+\), beyond 1e-09"):
        Predictor.load(run)
    with pytest.raises(VersionMismatchError, match="does not reproduce"):
        # the versions are another decision: they do not excuse the numbers
        Predictor.load(run, allow_version_mismatch=True)
    for args in (["predict", "--run", run, new_csv, "-o", tmp_path / "out.csv"],
                 ["serve", "--run", run, "--port", "0"]):
        r = cli(*args)
        assert (r.returncode == 1 and f"{n} of {n} held-out predictions differ" in r.stderr
                and "--rtol" in r.stderr), (args, r.stderr)
        assert "Traceback" not in r.stderr
    r = cli("predict", "--rtol", "1e-2", "--run", run, new_csv, "-o", tmp_path / "out.csv")
    assert r.returncode == 0 and "loaded as numerically equivalent" in r.stderr, r.stderr


def test_a_run_made_under_another_python_is_refused_at_load_and_by_reproduce(store):
    """Each Python has its own lock (requirements/3.X/) and wheels: a run made under another one is said so, and refused
    by default."""
    [run] = list_runs(store)
    m = read_json(run / "manifest.json")
    m["environment"]["python"] = "3.99.1"
    write_json(run / "manifest.json", m)
    sign_manifest(run, Manifest.read(run / "manifest.json"))
    with pytest.raises(VersionMismatchError,
                       match=r"Python 3\.99 in the run, 3\.1\d here \(requirements/3\.99/ holds the run's lock\)"):
        Predictor.load(run)
    assert Predictor.load(run, allow_version_mismatch=True).run_id == run.name
    r = cli("reproduce", run, "--no-progress")
    assert r.returncode == 1 and re.search(r"Python +DIFFERS +Python 3\.99 in the run, 3\.1\d here", r.stdout), r.stdout
    assert "make PYTHON=python3.99" in r.stdout and "--allow-other-python" in r.stdout and "new run" not in r.stdout
    assert len(list_runs(store)) == 1  # nothing was re-executed

def test_data_changed_after_the_run_reproduced_from_snapshot_or_explained(tmp_path, toy):
    data = tmp_path / "train.csv"
    lines = (toy / toy_project().data_file).read_text().splitlines(keepends=True)
    data.write_text("".join(lines))
    r = cli("train", "--no-progress", "-p", "runs_dir", tmp_path / "runs", "-p", "data", data)
    assert r.returncode == 0, r.stderr
    [run] = list_runs(tmp_path / "runs")
    data.write_text("".join(lines) + "9999," + lines[-1].split(",", 1)[1])  # one row appended after the run
    r = cli("reproduce", "--no-progress", run)  # the run's snapshot still has the data it trained on
    assert r.returncode == 0 and "from the run's snapshot" in r.stdout, r.stdout + r.stderr
    for snap in (tmp_path / "runs" / ".snapshots").iterdir(): snap.unlink()
    r = cli("reproduce", "--no-progress", run)  # no snapshot: reload the source, and see it changed
    assert r.returncode == 1
    assert "data fingerprint differs" in r.stdout and "200 vs 201 rows" in r.stdout, r.stdout


def test_two_concurrent_jobs_make_two_complete_runs(tmp_path):
    cmd = [sys.executable, "-m", "nbprod.cli", "train", "--no-progress", "-p", "runs_dir", str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = list_runs(tmp_path)
    assert len(runs) == 2 and runs[0].name != runs[1].name
    for run in runs:
        Predictor.load(run)  # every file matches its manifest
    r = cli("reproduce", runs[0], "--against", runs[1])
    assert r.returncode == 0 and REPRODUCED in r.stdout, r.stdout


def test_runs_list_show_and_compare(store):
    [run] = list_runs(store)
    r = cli("train", "--no-progress", "-p", "runs_dir", store, "-p", "alpha", "3")  # another recipe on the same rows
    assert r.returncode == 0, r.stderr
    [a, b] = list_runs(store)
    r = runs_cli(store, "list")
    assert r.returncode == 0 and a.name in r.stdout and b.name in r.stdout and r.stdout.count("complete") == 2
    r = runs_cli(store, "show", a.name)
    assert r.returncode == 0 and "fingerprint" in r.stdout and "model.joblib" in r.stdout
    assert json.loads(runs_cli(store, "show", "--json", a.name).stdout)["run_id"] == a.name
    r = runs_cli(store, "compare", a.name, b.name)
    assert r.returncode == 0
    assert "parameters.alpha" in r.stdout and "metrics.rmse" in r.stdout
    assert "data.fingerprint" not in r.stdout  # same data
    r = runs_cli(store, "show", "nope")
    assert r.returncode == 1 and "no finished run 'nope'" in r.stderr
