"""The manifest of a real run covers what is needed to reproduce it (manifest schema version 2)."""
import hashlib
import json
import re

from nbprod.manifest import MANIFEST_VERSION, distributions
from nbprod.runs import read_json

from house_prices.data import FEATURES, fingerprint, read_csv


def test_manifest_has_every_documented_section(train_job):
    m = read_json(train_job() / "manifest.json")
    assert m["manifest_version"] == MANIFEST_VERSION == 2
    assert {"run_id", "parameters", "seeds", "data", "split", "features", "model", "metrics", "environment", "job",
            "code", "artifacts"} <= set(m)


def test_data_section(train_job, settings):
    d = read_json(train_job() / "manifest.json")["data"]
    assert d["fingerprint"] == fingerprint(read_csv(settings.train_csv))
    assert (d["rows"], d["columns"]) == (1460, 81) and len(d["dtypes"]) == 81 and d["dtypes"]["MSSubClass"] == "str"
    assert (d["reference"], d["kind"], d["as_of"]) == ("data/house-prices/train.csv", "csv", None)
    assert (train_job().parent / ".snapshots" / f"{d['fingerprint']}.parquet").is_file()


def test_split_section_hashes_the_ids(train_job):
    run = train_job()
    s = read_json(run / "manifest.json")["split"]
    held_out_ids = ",".join(str(i) for i in sorted(json_ids(run)))
    assert s["held_out_ids_sha256"] == hashlib.sha256(held_out_ids.encode()).hexdigest()
    assert (s["seed"], s["test_size"], s["train_rows"], s["held_out_rows"]) == (0, 0.1, 1314, 146)


def json_ids(run):
    import pandas as pd
    return pd.read_csv(run / "predictions.csv").Id.tolist()


def test_features_model_and_seeds(train_job):
    m = read_json(train_job() / "manifest.json")
    assert [f["name"] for f in m["features"]["input"]] == FEATURES
    assert set(m["features"]["output"]) == {"pipeline", "model/linear", "model/trees"}
    assert "numeric__TotalSF" in m["features"]["output"]["model/trees"]
    est = m["model"]["estimator"]
    assert est["class"] == "sklearn.pipeline.Pipeline"
    blend = est["children"]["steps"][1]["children"]["regressor"]
    assert blend["class"] == "sklearn.ensemble._voting.VotingRegressor"
    assert blend["params"]["weights"] == [0.5, 0.5]
    assert [e["name"] for e in blend["children"]["estimators"]] == ["linear", "trees"]
    assert m["seeds"]["random_states"]["model__regressor__trees__gbm__random_state"] == 0
    assert m["seeds"]["pythonhashseed"] == "0"
    assert m["model"]["hyperparameters"]["gbm_n_estimators"] == 600


def test_environment_and_code(train_job, settings):
    m = read_json(train_job() / "manifest.json")
    e = m["environment"]
    assert e["distributions"] == distributions()  # the kernel ran in this very environment
    lock = settings.lock_dir / "dev.lock"  # this Python's
    assert e["lock_files"][f"{lock.parent.name}/dev.lock"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert e["lock_mismatches"] == []
    assert e["threadpools"] and all(t["num_threads"] == 1 for t in e["threadpools"])  # fixed by the job runner
    assert e["env"]["OMP_NUM_THREADS"] == "1"
    c = m["code"]
    assert c["package_version"] and set(c) == {"package_version", "git_commit", "git_dirty", "git_diff_sha256"}
    j = m["job"]
    assert j["notebook"] == "nbs/jobs/train.ipynb" and re.fullmatch(r"[0-9a-f]{64}", j["notebook_sha256"])
    assert j["started"] < j["finished"]


def test_manifest_is_plain_json(train_job):
    text = (train_job() / "manifest.json").read_text()
    assert json.loads(text) and "NaN" not in text
