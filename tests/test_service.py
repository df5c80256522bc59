"""The HTTP service on a real uvicorn server on loopback: parity with research, bad input, limits, load, docs without internet."""
import json
import math
import random
import shutil
import subprocess
import threading
import time

import httpx
import pytest
from nbprod.runs import read_predictions

from house_prices.data import read_raw_csv

from conftest import BIN, free_port, serving


@pytest.fixture(scope="module")
def server(train_job, tmp_path_factory):
    "A real `house-prices serve` process on a free loopback port, serving the default run."
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serving(log, "--run", train_job(), "--max-records", "2000", "--max-body-mb", "4") as (url, _):
        yield type("Server", (), {"url": url, "log": log, "run": train_job()})


def records_of(df):
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


@pytest.fixture(scope="module")
def test_records(settings):
    return records_of(read_raw_csv(settings.test_csv))


def post(server, body=None, content=None, headers=None):
    return httpx.post(server.url + "/predict", json=body, content=content, headers=headers, timeout=60)


def test_health_and_model(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok", "run_id": server.run.name}
    m = httpx.get(server.url + "/model").json()
    assert m["run_id"] == server.run.name and m["metrics"]["rmse_log"] <= 0.12
    assert m["versions"]["scikit-learn"] and len(m["contract"]["fields"]) == 79


def test_openapi_schema_comes_from_the_contract(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    record = schema["anyOf"][0]
    d = record["properties"]["Neighborhood"]["description"]
    assert "must have a value" in d and "NoRidge" in d and "required" not in record  # a missing value refuses the record, not the request
    assert record["properties"]["Id"]["maximum"] == 2**63 - 1
    assert set(spec["paths"]["/predict"]["post"]["responses"]) >= {"200", "413", "422"}


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


def detail(r):
    assert r.status_code == 422, (r.status_code, r.text)
    return r.json()["detail"]


def answers(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["predictions"]


def test_missing_required_field_refuses_that_record_only(server, test_records):
    rec = {k: v for k, v in test_records[0].items() if k != "Neighborhood"}
    r = post(server, [rec, test_records[1]])
    bad, good = answers(r)
    assert (r.json()["scored"], r.json()["refused"]) == (1, 1)
    assert bad["SalePrice"] is None and bad["Id"] == 1461 and good["SalePrice"] > 0 and good["errors"] == []
    [d] = bad["errors"]
    assert d["field"] == "Neighborhood" and d["record"] == 0 and d["Id"] == 1461 and "must have a value" in d["msg"]
    assert d["loc"] == ["body", "records", 0, "Neighborhood"] and d["type"] == "value_error"
    r = httpx.post(server.url + "/predict?all_or_nothing=true", json=[rec, test_records[1]], timeout=60)  # none scored unless all can be
    bad, held = answers(r)
    assert (r.json()["scored"], bad["SalePrice"], held["SalePrice"]) == (0, None, None)
    assert bad["errors"][0]["field"] == "Neighborhood" and "another record of the request was refused" in held["errors"][0]["msg"]


def test_bad_values_and_nan_per_record_per_field(server, test_records):
    body = ('{"records": [' + json.dumps(test_records[0]) + "," + json.dumps({**test_records[1], "LotArea": "big", "GrLivArea": 1e39})
            + "," + json.dumps(test_records[2]).replace('"GrLivArea": "', '"GrLivArea": NaN, "x": "') + "]}")
    got = answers(post(server, content=body, headers={"content-type": "application/json"}))
    assert got[0]["SalePrice"] > 0 and got[0]["errors"] == []
    errs = {d["field"]: d["msg"] for d in got[1]["errors"]}
    assert errs["LotArea"] == "expected a number" and errs["GrLivArea"].startswith("expected a finite number within")
    assert "must have a value" in {d["field"]: d["msg"] for d in got[2]["errors"]}["GrLivArea"]


def test_values_of_a_type_the_schema_excludes_refuse_the_request(server, test_records):
    ds = detail(post(server, [test_records[0], {**test_records[1], "YearBuilt": True, "Street": 1.5, "Id": "x"}, 7]))
    got = {(d["record"], d["field"]): d["msg"] for d in ds}
    assert got == {(1, "YearBuilt"): "expected number or string, got bool", (1, "Street"): "expected string or integer, got float",
                   (1, "Id"): "expected a 64-bit integer (or its digits as a string)", (2, None): "expected a record (a JSON object), got int"}
    assert {d["type"] for d in ds} == {"type_error"}


def test_every_record_answered_with_exact_ids_and_short_answers(server, test_records):
    preds = answers(post(server, [{}] * 300))  # 300 empty records: 300 answers, none silently lost
    assert len(preds) == 300 and all(p["SalePrice"] is None and p["errors"] for p in preds)
    assert all(len(p["errors"]) == 6 and "more problem(s), not listed" in p["errors"][-1]["msg"] for p in preds[:100])
    big = [{**test_records[0], "Id": 2**53 + 1}, {**test_records[0], "Id": 2**63 - 1}, {**test_records[0], "Id": str(2**62 + 3)}]
    assert [p["Id"] for p in answers(post(server, big))] == [2**53 + 1, 2**63 - 1, 2**62 + 3]  # exactly as sent
    assert detail(post(server, {**test_records[0], "Id": 2**63}))[0]["field"] == "Id"
    huge = post(server, [{"Id": i} for i in range(1999)])
    assert huge.status_code == 200 and len(huge.content) < 3 * 2**20, len(huge.content)  # a 28 KB request gets no 79 MB answer
    long = answers(post(server, {**test_records[0], "Neighborhood": "x" * 2**20}))[0]
    assert long["SalePrice"] > 0 and max(len(w["msg"]) + len(w["value"] or "") for w in long["warnings"]) < 300


def test_unknown_category_is_scored_with_a_warning(server, test_records):
    r = post(server, {**test_records[0], "Neighborhood": "Atlantis"})
    assert r.status_code == 200
    [w] = [w for w in r.json()["predictions"][0]["warnings"] if w["field"] == "Neighborhood"]
    assert "'Atlantis' was not seen in training" in w["msg"] and w["type"] == "warning"


@pytest.mark.parametrize("content", [b"", b"not json", b"{", b"[1, 2]", b'"a string"', b"42", b"null", b"[]", b'{"records": []}',
                                     b'{"records": "x"}', b'[{"LotArea": {"nested": [1, 2]}}]', b'{"LotArea": [1e400]}',
                                     b"\xff\xfe", b'{"records": [null]}', b"[" * 200_000, b'[{"LotArea": ' + b"1" * 5000 + b"}]"])
def test_malformed_bodies_get_422_never_500(server, content):
    r = post(server, content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422, (content, r.status_code, r.text)
    assert r.json()["detail"]


def test_oversized_requests_get_413(server, test_records):
    r = post(server, [{"Id": i} for i in range(2001)])  # more records than --max-records 2000
    assert r.status_code == 413 and "limit is 2000" in r.json()["detail"]
    r = post(server, content=b"[" + b" " * (5 * 2**20) + b"]", headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    def chunks():
        for _ in range(80): yield b" " * 2**16
    r = httpx.post(server.url + "/predict", content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413  # a chunked upload without Content-Length is counted too


def test_one_json_log_line_per_request_with_request_id(server, test_records):
    r = post(server, test_records[0], headers={"x-request-id": "test-req-42"})
    assert r.headers["x-request-id"] == "test-req-42"
    time.sleep(0.2)
    lines = [json.loads(l) for l in server.log.read_text().splitlines() if l.startswith("{")]
    [line] = [l for l in lines if l.get("request_id") == "test-req-42"]
    assert line["status"] == 200 and line["path"] == "/predict" and line["records"] == 1 and line["latency_ms"] > 0


def test_eight_concurrent_clients_good_and_hostile_for_thirty_seconds(server, test_records):
    "Four clients send good batches, four send hostile requests; every good record gets its exact prediction, nothing gets a 5xx."
    expected = {p["Id"]: p["SalePrice"] for p in answers(post(server, test_records))}
    rec = test_records[0]
    hostile = [dict(json=[{}] * 300), dict(json={**rec, "GrLivArea": 1e39}), dict(json={**rec, "Id": 2**63}), dict(json=[{**rec, "LotArea": True}, 7]),
               dict(json={**rec, "Neighborhood": "x" * 100_000}), dict(json=[{"Id": i} for i in range(1500)]), dict(content=b'{"records": [{"a": '),
               dict(json={**rec, "LotArea": "9" * 400}), dict(json=[{**rec, "Id": str(2**53 + 1)}])]
    stop, results, lock = time.time() + 30, [], threading.Lock()
    def client(seed, good):
        rng, mine = random.Random(seed), []
        with httpx.Client(base_url=server.url, timeout=60) as c:
            while time.time() < stop:
                if good:
                    batch = rng.sample(test_records, rng.choice([1, 1, 1, 5, 50]))
                    r = c.post("/predict", json=batch)
                    ok = r.status_code == 200 and [(p["Id"], p["SalePrice"]) for p in r.json()["predictions"]] == [(int(b["Id"]), expected[int(b["Id"])]) for b in batch]
                    mine.append(("good", r.status_code, ok))
                else:
                    kw = rng.choice(hostile)
                    r = c.post("/predict", headers={"content-type": "application/json"}, **kw)
                    mine.append(("hostile", r.status_code, r.status_code in (200, 413, 422)))
        with lock: results.extend(mine)
    threads = [threading.Thread(target=client, args=(i, i % 2 == 0)) for i in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    good = [r for r in results if r[0] == "good"]
    assert len(good) > 50 and len([r for r in results if r[0] == "hostile"]) > 20, len(results)
    assert all(ok for _, _, ok in results), [r for r in results if not r[2]][:5]


def test_an_outside_fuzzer_finds_the_schema_and_the_service_agreeing(server, tmp_path):
    "schemathesis generates requests from /openapi.json, valid and invalid: every answer is one the schema documents, never a 5xx."
    r = subprocess.run([str(BIN / "schemathesis"), "run", server.url + "/openapi.json", "--max-examples", "150", "--seed", "1", "--workers", "1",
                        "--no-color"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "passed" in r.stdout and "failure" not in r.stdout.split("SUMMARY")[-1].lower(), r.stdout[-2000:]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (Debian's package 'chromium'; .ci/run installs it as root)")


def rendered(url, profile):
    "The page's DOM after its scripts ran in headless Chromium, which can reach 127.0.0.1 and no other host (every name resolves to nothing)."
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=15000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "<html" in r.stdout, r.stderr[-2000:]
    return r.stdout


@needs_chromium
def test_the_docs_render_without_internet(server, tmp_path):
    docs = rendered(server.url + "/docs", tmp_path / "a")
    for path in ("/predict", "/health", "/model", "/metrics"):  # Swagger UI ran: every operation is on the page
        assert f'class="opblock-summary-path" data-path="{path}"' in docs, path
    redoc = rendered(server.url + "/redoc", tmp_path / "b")
    assert 'operation/predict_predict_post' in redoc and 'operation/health_health_get' in redoc


@needs_chromium
def test_without_the_service_own_assets_the_docs_would_be_blank_here(tmp_path):
    "The control: FastAPI's stock /docs (its assets from a CDN) in the same browser stays empty, so the block above is real."
    import fastapi
    import uvicorn
    app = fastapi.FastAPI()
    app.get("/ping")(lambda: "pong")
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="error"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    try:
        while not srv.started: time.sleep(0.05)
        dom = rendered(f"http://127.0.0.1:{srv.config.port}/docs", tmp_path)
        assert 'id="swagger-ui"' in dom and "opblock" not in dom and "cdn.jsdelivr.net" in dom
    finally:
        srv.should_exit = True
        t.join(timeout=30)
