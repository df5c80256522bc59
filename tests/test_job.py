"""The training job end to end: papermill runs nbs/jobs/train.ipynb on the project kernel into a run folder."""
import json
import re
import subprocess
import sys

import pandas as pd
from nbprod.files import sha256_file as file_sha256
from nbprod.job import job_parameters
from nbprod.runs import list_runs, read_json, read_predictions

from house_prices.pipeline import DEFAULT_PARAMS

from conftest import house_prices_cli


def test_run_folder_holds_every_artifact(train_job):
    run = train_job()
    assert {p.name for p in run.iterdir()} == {"train.ipynb", "report.html", "model.joblib", "metrics.json", "predictions.csv",
                                            "held_out.csv", "contract.json", "manifest.json", "manifest.sig", "train_predictions.csv",
                                            "profile.json"}
    m = read_json(run / "manifest.json")
    assert m["run_id"] == run.name
    assert m["parameters"]["seed"] == 0 and m["split"]["seed"] == 0 and m["split"]["test_size"] == 0.1
    assert m["data"]["file_sha256"] == "1e18addf81e5e4d347cc17ee6075bbe4a42b7fa26b9e5b063e8f692a5f929d41"
    assert m["data"]["rows"] == 1460
    assert m["environment"]["packages"]["scikit-learn"]
    for name, a in m["artifacts"].items():
        assert file_sha256(run / name) == a["sha256"], name
    assert set(m["artifacts"]) == {p.name for p in run.iterdir()} - {"manifest.json", "manifest.sig"}  # the signature covers every file
    assert m["metrics"] == read_json(run / "metrics.json")
    executed = json.loads((run / "train.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["run_dir"].endswith(run.name)
    assert not any(o.get("output_type") == "error" for c in executed["cells"] for o in c.get("outputs", []))


def test_report_is_self_contained_html_with_plots(train_job):
    html = (train_job() / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert not re.findall(r'(?:src|href)="(https?:[^"]*)"', html), "the report must not fetch anything"
    assert html.count('src="data:image/png;base64,') >= 2  # predictions and model weights
    assert "RMSE" in html or "rmse_log" in html
    assert "fingerprint" in html  # the manifest summary


def test_held_out_quality_beats_the_course_package(train_job):
    m = read_json(train_job() / "metrics.json")
    assert m["n"] == 146
    assert m["rmse_log"] <= 0.120, m  # the course package: 0.1253 on the same split


def test_predictions_cover_exactly_the_held_out_ids(train_job):
    run = train_job()
    preds = read_predictions(run)
    m = read_json(run / "manifest.json")
    assert len(preds) == m["split"]["held_out_rows"] == 146
    assert preds.Id.is_unique and preds.predicted.notna().all()


def fitted_sha256(run):
    return read_json(run / "manifest.json")["model"]["fitted"]["sha256"]


def test_same_seed_gives_bit_identical_predictions_and_model(train_job):
    a, b = train_job("a"), train_job("b")
    for rows in ("held_out", "train"):
        pd.testing.assert_frame_equal(read_predictions(a, rows), read_predictions(b, rows), check_exact=True)
    assert fitted_sha256(a) == fitted_sha256(b)  # the same fitted parameters, whatever the pickle's bytes


def test_another_seed_gives_other_predictions(train_job):
    a, c = read_predictions(train_job("a")), read_predictions(train_job("a", seed=1))
    assert a.Id.tolist() == c.Id.tolist()  # the split has its own seed: same held-out houses
    assert (a.predicted != c.predicted).mean() > 0.9, "the model seed should change the predictions"


def test_fresh_process_reproduces_recorded_predictions(train_job, settings):
    run = train_job()
    code = f"""
import sys, pandas as pd
from house_prices.data import read_csv
from nbprod.predict import Predictor
from nbprod.runs import read_predictions
recorded = read_predictions({str(run)!r})
rows = read_csv({str(settings.data_file)!r})
rows = rows[rows.Id.isin(recorded.Id)]
got = Predictor.load({str(run)!r}).predict(rows)
assert got.Id.tolist() == recorded.Id.tolist()
mismatch = (got.SalePrice.to_numpy() != recorded.predicted.to_numpy()).sum()
p = Predictor.load({str(run)!r})
records = rows.astype(object).where(rows.notna(), None).to_dict("records")
one_by_one = [p.score([r]).predictions[0] for r in records]  # one record at a time: the same bits
mismatch += sum(a != b for a, b in zip(one_by_one, recorded.predicted))
print(mismatch)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"


def test_job_parameter_defaults_match_the_pipeline_defaults(settings):
    declared = job_parameters(settings.job_notebook)
    assert {k: declared[k] for k in DEFAULT_PARAMS} == DEFAULT_PARAMS


def test_manifest_records_every_job_parameter(train_job, settings):
    "reproduce re-injects the recorded parameters, so every declared one must be recorded."
    declared = set(job_parameters(settings.job_notebook)) - {"run_dir", "runs_dir"}
    assert set(read_json(train_job() / "manifest.json")["parameters"]) == declared


def test_unknown_parameter_is_an_error_not_a_warning(settings, tmp_path):
    r = house_prices_cli("train", "-p", "sed", "1", "-p", "runs_dir", tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "unknown job parameter(s): sed" in r.stderr
    assert "seed" in r.stderr  # the message lists the parameters that exist
    assert not any(tmp_path.iterdir()), "nothing may be staged for a job that was refused"


def test_cli_train_prints_run_folder_and_metrics(tmp_path):
    r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", tmp_path, "-p", "gbm_n_estimators", 50)
    assert r.returncode == 0, r.stderr
    [run] = list_runs(tmp_path)
    assert f"run: {run}" in r.stdout
    assert "RMSE of log price" in r.stdout
    assert read_json(run / "manifest.json")["parameters"]["gbm_n_estimators"] == 50


def test_failing_job_leaves_no_run_and_says_where_to_look(tmp_path):
    r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", tmp_path, "-p", "data", "data/house-prices/test.csv")
    assert r.returncode == 1
    assert "missing column(s): SalePrice" in r.stderr
    assert "executed notebook is kept at" in r.stderr
    assert list_runs(tmp_path) == []
    assert len(list((tmp_path / ".failed").iterdir())) == 1


def test_same_model_from_a_copy_of_the_project_elsewhere(train_job, settings, tmp_path):
    "A run depends on the project's content, not on where it lives: a copy elsewhere trains the same model."
    import shutil
    copy = tmp_path / "elsewhere" / "house-prices"
    copy.mkdir(parents=True)
    for name in ["pyproject.toml", "nbs", "data", "requirements"]:
        src = settings.root / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, copy / name)
    r = house_prices_cli("train", "--no-progress", env={"HOUSE_PRICES_ROOT": str(copy)})
    assert r.returncode == 0, r.stderr
    [run] = list_runs(copy / "runs")
    assert fitted_sha256(run) == fitted_sha256(train_job())
    pd.testing.assert_frame_equal(read_predictions(run, "train"), read_predictions(train_job(), "train"), check_exact=True)
    assert read_json(run / "manifest.json")["data"]["fingerprint"] == read_json(train_job() / "manifest.json")["data"]["fingerprint"]


def limited_file_size(limit):
    "A child process that may write files of at most `limit` bytes (as on a nearly full disk: writes fail with EFBIG)."
    import resource
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_write_failure_while_training_ends_in_a_short_message_and_no_run(tmp_path):
    from conftest import BIN
    r = subprocess.run([str(BIN / "house-prices"), "train", "--no-progress", "-p", "runs_dir", str(tmp_path), "-p", "gbm_n_estimators", "60"],
                       capture_output=True, text=True, timeout=600, preexec_fn=limited_file_size(300_000))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "File too large" in r.stderr and len(r.stderr.strip().splitlines()) <= 3, r.stderr
    assert list_runs(tmp_path) == []  # nothing that looks like a finished run
