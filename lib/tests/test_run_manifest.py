"""The manifest of a real run covers what is needed to reproduce it (manifest schema version 2), for a regression and a
classification: the toy projects' runs, made by the job runner."""
import hashlib
import json
import re

import pandas as pd
import pytest

from nbprod.environment import distributions
from nbprod.manifest import MANIFEST_VERSION
from nbprod.runs import read_json
from nbprod.schema import fingerprint, read_raw_csv, to_canonical
from nbprod.toy import toy_schema

from toys import TASKS, git


@pytest.mark.parametrize("task", TASKS)
def test_manifest_has_every_documented_section(toy_run, task):
    m = read_json(toy_run(task) / "manifest.json")
    assert m["manifest_version"] == MANIFEST_VERSION == 2
    assert {"run_id", "parameters", "seeds", "data", "split", "features", "model", "metrics", "environment", "job",
            "code", "artifacts"} <= set(m)


@pytest.mark.parametrize("task", TASKS)
def test_data_section(toy_run, toy_roots, task):
    run = toy_run(task)
    d = read_json(run / "manifest.json")["data"]
    schema = toy_schema(task)
    assert d["fingerprint"] == fingerprint(to_canonical(read_raw_csv(toy_roots[task] / "data/toy.csv"), schema), schema)
    assert (d["rows"], d["columns"]) == (200, 6) and d["dtypes"]["grade"] == "str" and d["dtypes"]["area"] == "float64"
    assert (d["reference"], d["kind"], d["as_of"]) == ("data/toy.csv", "csv", None)
    assert (run.parent / ".snapshots" / f"{d['fingerprint']}.parquet").is_file()


def test_split_section_hashes_the_ids(toy_run):
    run = toy_run()
    s = read_json(run / "manifest.json")["split"]
    held_out_ids = ",".join(str(i) for i in sorted(pd.read_csv(run / "predictions.csv").key))
    assert s["held_out_ids_sha256"] == hashlib.sha256(held_out_ids.encode()).hexdigest()
    assert (s["seed"], s["test_size"], s["train_rows"], s["held_out_rows"]) == (0, 0.1, 180, 20)
    other = read_json(toy_run(seed=1) / "manifest.json")["split"]
    assert other["seed"] == 1 and other["held_out_ids_sha256"] != s["held_out_ids_sha256"]


@pytest.mark.parametrize("task", TASKS)
def test_features_and_model(toy_run, task):
    m = read_json(toy_run(task) / "manifest.json")
    assert [f["name"] for f in m["features"]["input"]] == toy_schema(task).features
    assert m["features"]["output"]["pipeline"][:2] == ["numeric__area", "numeric__age"]
    assert "categorical__colour_none" in m["features"]["output"]["pipeline"]  # what "missing" became, one-hot
    est = m["model"]["estimator"]
    assert est["class"] == "sklearn.pipeline.Pipeline"
    model = est["children"]["steps"][1]
    assert model["class"] == {"regression": "sklearn.linear_model._ridge.Ridge",
                              "classification": "sklearn.linear_model._logistic.LogisticRegression"}[task]
    assert m["seeds"]["pythonhashseed"] == "0" and m["seeds"]["split"] == 0


def test_environment_and_code(toy_run, toy):
    m = read_json(toy_run() / "manifest.json")
    e = m["environment"]
    assert e["distributions"] == distributions()  # the kernel ran in this very environment
    assert e["threadpools"] and all(t["num_threads"] == 1 for t in e["threadpools"])  # fixed by the job runner
    assert e["env"]["OMP_NUM_THREADS"] == "1"
    c = m["code"]
    assert set(c) == {"package_version", "git_commit", "git_dirty", "git_diff_sha256"}
    assert (c["git_commit"], c["git_dirty"]) == (git(toy, "rev-parse", "HEAD").strip(), False)  # the toy's checkout
    j = m["job"]
    assert j["notebook"] == "nbs/jobs/train.ipynb" and re.fullmatch(r"[0-9a-f]{64}", j["notebook_sha256"])
    assert j["started"] < j["finished"] and j["kernel"] == "toy-regression"


@pytest.mark.parametrize("task", TASKS)
def test_manifest_is_plain_json(toy_run, task):
    text = (toy_run(task) / "manifest.json").read_text()
    assert json.loads(text) and "NaN" not in text
