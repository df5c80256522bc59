"""The example's run records the example: its data, its split, its features and its blend. (What every manifest holds,
and how, is the library's test: lib/tests/test_run_manifest.py.)"""
from nbprod.runs import read_json

from house_prices.data import FEATURES, fingerprint, read_csv


def test_data_and_split(train_job, settings):
    m = read_json(train_job() / "manifest.json")
    d, s = m["data"], m["split"]
    assert d["fingerprint"] == fingerprint(read_csv(settings.data_file))
    assert (d["rows"], d["columns"]) == (1460, 81) and len(d["dtypes"]) == 81 and d["dtypes"]["MSSubClass"] == "str"
    assert (d["reference"], d["kind"], d["as_of"]) == ("data/house-prices/train.csv", "csv", None)
    assert (s["seed"], s["test_size"], s["train_rows"], s["held_out_rows"]) == (0, 0.1, 1314, 146)


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
    assert m["model"]["hyperparameters"]["gbm_n_estimators"] == 600


def test_the_lock_of_this_python_is_recorded(train_job, settings):
    import hashlib
    e = read_json(train_job() / "manifest.json")["environment"]
    lock = settings.lock_dir / "dev.lock"  # this Python's
    assert e["lock_files"][f"{lock.parent.name}/dev.lock"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert e["lock_mismatches"] == []
    assert read_json(train_job() / "manifest.json")["code"]["package_version"]  # the example's version, from git
