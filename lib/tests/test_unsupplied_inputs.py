"""What production does not supply is never read as "none" in silence. A column declared not in production is no
feature, and a pipeline that reads it is refused before anything is fitted. A field a record leaves out is said (a
warning, or the error of a field that must have a value) and counted in the service's metrics, on the one-record path
and the many-record path alike; a file's missing column is said once, with what every row reads it as (what the fitted
pipeline makes of it), in the command's summary and the issues file, and refused with --require-all-columns. On a toy
run, through the real command and service."""
import csv
import dataclasses

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from nbprod.agreement import DIFFERENT, agree
from nbprod.batch import score_file
from nbprod.contract import MISSING, NOT_SENT, derive_contract, not_in_input
from nbprod.predict import SMALL_BATCH, Predictor
from nbprod.schema import to_canonical
from nbprod.toy import toy_pipeline, toy_project, toy_rows, toy_schema
from nbprod.train import fit

from toys import cli, records_of, serving

SCHEMA = toy_schema()
# area (a number that must be given), age (may be unknown), colour (missing means absent), grade (must be given)
FIELDS = SCHEMA.features
NOT_SENT_MESSAGES = {m for _, m in NOT_SENT.values()}


def toy_predictor():
    train = to_canonical(toy_rows(300), SCHEMA)
    pipeline = toy_pipeline().fit(train[SCHEMA.features], train[SCHEMA.target])
    return Predictor(pipeline, derive_contract(train, SCHEMA, prediction="y", pipeline=pipeline))


PREDICTOR = toy_predictor()
BASE = records_of(toy_rows(40, seed=5, target=False, start=5001).dropna())[0]  # every value given


def answers(scored):
    "Per row: the prediction (None where refused), its errors and its warnings, as text."
    f = scored.frame()
    return [(None if not ok else p, e, w) for ok, p, e, w in zip(scored.ok, f["y"], f["error"], f["warnings"])]


def same(a, b):
    "The same errors and warnings to the letter, the same rows refused, predictions within the toy's tolerance."
    assert [x[1:] for x in a] == [x[1:] for x in b]
    assert [x[0] is None for x in a] == [x[0] is None for x in b]
    got, want = ([x[0] for x in side if x[0] is not None] for side in (a, b))
    assert agree(np.array(got, float), np.array(want, float)).tier != DIFFERENT


keys = st.sampled_from(["key", *FIELDS])


@hypothesis_settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(left_out=st.sets(keys), nulls=st.sets(keys))
def test_a_field_left_out_is_said_apart_from_a_null_on_every_path(left_out, nulls, tmp_path_factory):
    rec = {k: (None if k in nulls else v) for k, v in BASE.items() if k not in left_out}
    alone = PREDICTOR.score([rec])
    said = {c: m for c, m in zip(alone.issues.column, alone.issues.message) if m in NOT_SENT_MESSAGES}
    assert set(said) == left_out - {"key"}  # every field left out is said; the id is not a field
    for c in said: assert said[c] == NOT_SENT[SCHEMA.by_name[c].na][1]
    nulled = {c for c, m in zip(alone.issues.column, alone.issues.message) if m == MISSING["unknown"][1]}
    assert nulled == {"age"} & (nulls - left_out)  # a null is a missing value, read by its column's rule
    assert alone.ok[0] == (not {"area", "grade"} & (left_out | nulls))
    # among many records, some of which send everything (checked column by column, a frame of them)
    many = answers(PREDICTOR.score([rec, BASE] * (SMALL_BATCH // 2 + 20)))
    same(answers(alone), many[:1])
    assert all(m == many[0] for m in many[::2]) and all(m == many[1] for m in many[1::2])
    # a file of that record: the columns it lacks are said once, its row refused as the record is
    if not rec: return  # no header at all: not a CSV file
    d = tmp_path_factory.mktemp("file")
    with open(d / "in.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rec)); w.writeheader(); w.writerow({k: "" if v is None else v
                                                                                   for k, v in rec.items()})
    summary = score_file(PREDICTOR, d / "in.csv", d / "out.csv")
    fields = {f.name: f for f in PREDICTOR.contract.fields}
    lacking = {c: not_in_input(fields[c])[1] for c in FIELDS if c in left_out}
    assert dict(summary.missing_columns) == {f"{c}: {m}": 1 for c, m in lacking.items()}
    assert summary.failed == (not alone.ok[0])


def test_the_command_says_once_what_rows_read_a_missing_column_as_and_refuses_it_when_told(toy_run, tmp_path):
    run = toy_run()
    rows = toy_rows(500, seed=3, target=False, start=7001)
    rows.drop(columns=["colour", "age"]).to_csv(tmp_path / "lacking.csv", index=False)
    r = cli("predict", "--run", run, "--no-progress", tmp_path / "lacking.csv", "-o", tmp_path / "out.csv",
            "--issues-file", tmp_path / "issues.csv", "--chunk-size", "128")
    assert r.returncode == 0, r.stderr
    assert "500 rows: 500 scored, 0 refused, 500 scored with warnings" in r.stdout, r.stdout
    assert "columns the model reads that the input lacks (2):" in r.stdout
    assert "500 × colour: is not in the input: every row reads it as missing, which for this column means absent" in (
        r.stdout)
    assert "lacks 2 of the model's columns, which every row reads as missing" in r.stderr  # the log, before scoring
    issues = pd.read_csv(tmp_path / "issues.csv")
    whole = issues[issues.row.isna()]
    assert whole[["column", "value", "level"]].values.tolist() == [["age", "lacking.csv", "warning"],
                                                                    ["colour", "lacking.csv", "warning"]]
    assert len(issues) == 2  # nothing per row: the toy's other values are all there
    # the same predictions as the same rows with those columns empty: missing in every row
    rows.assign(colour=None, age=None).to_csv(tmp_path / "empty.csv", index=False)
    assert cli("predict", "--run", run, "--no-progress", tmp_path / "empty.csv", "-o",
               tmp_path / "empty_out.csv").returncode == 0
    a, b = pd.read_csv(tmp_path / "out.csv"), pd.read_csv(tmp_path / "empty_out.csv")
    assert a.key.tolist() == b.key.tolist() and agree(a.predicted.to_numpy(), b.predicted.to_numpy()).tier != DIFFERENT
    r = cli("predict", "--run", run, "--no-progress", "--require-all-columns", tmp_path / "lacking.csv", "-o",
            tmp_path / "never.csv")
    assert r.returncode == 1 and "lacks 2 of the model's 4 columns: age, colour" in r.stderr, r.stderr
    assert not (tmp_path / "never.csv").exists()
    # a column that must have a value: every row refused, each with its error
    rows.drop(columns=["grade"]).to_csv(tmp_path / "no_grade.csv", index=False)
    r = cli("predict", "--run", run, "--no-progress", "--allow-errors", tmp_path / "no_grade.csv", "-o",
            tmp_path / "no_grade_out.csv")
    out = pd.read_csv(tmp_path / "no_grade_out.csv")
    assert r.returncode == 0 and out.predicted.isna().all() and len(out) == 500
    assert (out.error == "grade: is not in the input, but this column must have a value: every row refused").all()


def metrics_of(url):
    "name -> {labels: value} of the counters at /metrics, parsed by Prometheus' own parser."
    text = httpx.get(url + "/metrics").text
    return {f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples if s.name.endswith("_total")}
            for f in text_string_to_metric_families(text)}


def test_the_service_tells_a_field_left_out_from_a_null_and_counts_it(toy_run, tmp_path):
    with serving(tmp_path / "server.log", "--run", toy_run()) as (url, _):
        rec = records_of(toy_rows(3, seed=5, target=False, start=5001))
        left_out = [{k: v for k, v in r.items() if k != "colour"} for r in rec]
        sent_null = {**rec[0], "colour": None}
        r = httpx.post(url + "/predict", json=[*left_out, sent_null], timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        for p in got[:3]:
            [w] = [w for w in p["warnings"] if w["field"] == "colour"]
            assert w["msg"] == NOT_SENT["absent"][1] and np.isfinite(p["predicted"])
        assert not [w for w in got[3]["warnings"] if w["field"] == "colour"]  # null: colour is absent, as sent
        no_grade = {k: v for k, v in rec[0].items() if k != "grade"}
        [p] = httpx.post(url + "/predict", json=no_grade, timeout=30).json()["predictions"]
        assert p["predicted"] is None and p["errors"][0]["msg"] == NOT_SENT["required"][1]
        m = metrics_of(url)
        assert m["model_fields_not_sent"] == {(("field", "colour"),): 3.0, (("field", "grade"),): 1.0}


def test_a_column_production_does_not_supply_is_no_feature_and_a_pipeline_reading_it_is_refused_before_fitting():
    toy = toy_project()
    schema = dataclasses.replace(SCHEMA, columns=tuple(dataclasses.replace(c, in_production=False) if c.name == "age"
                                                       else c for c in SCHEMA.columns))
    later = dataclasses.replace(toy, schema=schema, build_pipeline=lambda params=None: toy_pipeline(schema=schema))
    train = to_canonical(toy_rows(300), schema)  # still declared: checked in training data
    pipeline = fit(train, project=later)  # the toy's pipeline takes its columns from the schema's features
    contract = derive_contract(train, schema, prediction="y", pipeline=pipeline)
    assert [f.name for f in contract.fields] == ["area", "colour", "grade"]  # production is never asked for it
    naming = dataclasses.replace(later, build_pipeline=lambda params=None: toy_pipeline(schema=SCHEMA))
    with pytest.raises(ValueError, match=r"does not supply .*'age' in step prep → numeric"):
        fit(train, project=naming)
    own = dataclasses.replace(later, build_pipeline=lambda params=None: make_pipeline(
        FunctionTransformer(lambda X: X.assign(age_squared=X["age"] ** 2)), toy_pipeline(schema=schema)))
    with pytest.raises(ValueError, match="reads 'age', which production does not supply"):
        fit(train, project=own)  # a transformer of the project's own that takes the column by name


def test_the_contract_and_the_service_say_what_a_missing_value_becomes(toy_run, tmp_path):
    run = toy_run()
    contract = Predictor.load(run).contract
    becomes = {f.name: f.missing_becomes for f in contract.fields}
    assert becomes["colour"] == "'none', a category of its own" and becomes["age"].endswith(", the median in training")
    with serving(tmp_path / "server.log", "--run", run) as (url, _):
        model = httpx.get(url + "/model").json()
        said = {f["name"]: f.get("missing_becomes") for f in model["contract"]["fields"]}
        assert said == becomes
        assert "missing becomes 'none', a category of its own" in httpx.get(url + "/openapi.json").text  # per field
