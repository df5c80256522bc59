"""The example's run over HTTP (a real `house-prices serve`): its contract is the schema of its requests, its held-out
predictions survive the service and the JSON round trip to the bit, all of test.csv is answered. What the service does
with any project's requests (bad input, limits, load, a fuzzer, the docs) is tested once, in the library's tests."""
import math

import httpx
import pytest
from nbprod.runs import read_predictions

from house_prices.data import read_raw_csv

from conftest import serving


@pytest.fixture(scope="module")
def server(train_job, tmp_path_factory):
    "A real `house-prices serve` process on a free loopback port, serving the default run."
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serving(log, "--run", train_job()) as (url, _):
        yield type("Server", (), {"url": url, "log": log, "run": train_job()})


def records_of(df):
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


@pytest.fixture(scope="module")
def test_records(settings):
    return records_of(read_raw_csv(settings.scoring_file))


def post(server, body=None, content=None, headers=None):
    return httpx.post(server.url + "/predict", json=body, content=content, headers=headers, timeout=60)


def test_the_model_and_its_request_schema_are_the_runs(server):
    m = httpx.get(server.url + "/model").json()
    assert m["run_id"] == server.run.name and m["metrics"]["rmse_log"] <= 0.12 and len(m["contract"]["fields"]) == 79
    spec = httpx.get(server.url + "/openapi.json").json()
    record = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0]
    d = record["properties"]["Neighborhood"]["description"]
    assert "must have a value" in d and "NoRidge" in d and record["properties"]["Id"]["maximum"] == 2**63 - 1


def test_parity_research_predictor_and_http_bit_identical(server):
    "The held-out predictions the job recorded == the same rows over HTTP, after the JSON round trip."
    held_out = read_raw_csv(server.run / "held_out.csv")
    recorded = read_predictions(server.run)
    r = post(server, {"records": records_of(held_out)})
    assert r.status_code == 200, r.text
    got = [p["SalePrice"] for p in r.json()["predictions"]]
    assert [p["Id"] for p in r.json()["predictions"]] == recorded.Id.tolist()
    assert got == recorded.predicted.tolist()  # exact float equality
    with httpx.Client(base_url=server.url, timeout=30) as c:  # one record per request: the same bits as in the batch
        one_by_one = [c.post("/predict", json=rec).json()["predictions"][0]["SalePrice"] for rec in records_of(held_out)]
    assert one_by_one == recorded.predicted.tolist()


def test_all_of_test_csv_over_http(server, test_records):
    r = post(server, test_records)
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert len(preds) == 1459 and all(p["SalePrice"] > 0 for p in preds)
    assert [p["Id"] for p in preds] == [int(x["Id"]) for x in test_records]


def answers(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["predictions"]


def test_a_record_with_many_problems_lists_five_and_counts_the_rest(server):
    preds = answers(post(server, [{}] * 300))  # 300 empty records: 300 answers, none silently lost
    assert len(preds) == 300 and all(p["SalePrice"] is None for p in preds)
    assert all(len(p["errors"]) == 6 and "more problem(s), not listed (at most 5 are listed per record)" in p["errors"][-1]["msg"] for p in preds[:100])
