"""The HTTP service of a toy run on a real uvicorn server on loopback (`python -m nbprod.cli serve`): its answers agree
with
research's, bad input is answered per record and per field, limits hold, every request is logged, eight clients at once
get their exact answers, an outside fuzzer finds schema and service agreeing, and the docs render without internet."""
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from nbprod.agreement import DIFFERENT, agree
from nbprod.runs import read_predictions
from nbprod.schema import read_raw_csv
from nbprod.service import MAX_LISTED_ISSUES
from nbprod.toy import toy_rows, toy_schema

from toys import cli, free_port, records_of, serving


@pytest.fixture(scope="module")
def server(toy_run, tmp_path_factory):
    "A real service of the toy regression run on a free loopback port."
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serving(log, "--run", toy_run(), "--max-records", "2000", "--max-body-mb", "4") as (url, _):
        yield type("Server", (), {"url": url, "log": log, "run": toy_run()})


@pytest.fixture(scope="module")
def new_records():
    "300 rows the run never saw, as a client sends them."
    return records_of(toy_rows(300, seed=5, target=False, start=5001))


def post(server, body=None, content=None, headers=None, params=None):
    return httpx.post(server.url + "/predict", json=body, content=content, headers=headers, params=params, timeout=60)


def detail(r):
    assert r.status_code == 422, (r.status_code, r.text)
    return r.json()["detail"]


def answers(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["predictions"]


def test_health_and_model(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok", "run_id": server.run.name}
    m = httpx.get(server.url + "/model").json()
    assert m["run_id"] == server.run.name and 0 < m["metrics"]["rmse"] < 1 and m["metrics"]["n"] == 20
    assert m["versions"]["scikit-learn"] and m["versions"]["nbprod"]
    assert [f["name"] for f in m["contract"]["fields"]] == ["area", "age", "colour", "grade"]


def test_openapi_schema_comes_from_the_contract(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    record = schema["anyOf"][0]
    d = record["properties"]["grade"]["description"]
    assert ("must have a value" in d and "categories seen in training: A, B, C" in d
            and d.startswith(toy_schema().by_name["grade"].doc))
    assert "required" not in record  # a missing value refuses the record, not the request
    assert record["properties"]["key"]["maximum"] == 2**63 - 1
    assert set(spec["paths"]["/predict"]["post"]["responses"]) >= {"200", "413", "422"}


def test_held_out_rows_over_http_agree_with_what_the_job_recorded(server):
    """The run's held-out rows over HTTP, in one request and one record per request: the job's recorded predictions,
    within RTOL (the toy's ridge sums through BLAS, whose order may follow the rows' count); the keys exactly."""
    held_out = read_raw_csv(server.run / "held_out.csv")
    recorded = read_predictions(server.run)
    preds = answers(post(server, {"records": records_of(held_out)}))
    assert [p["key"] for p in preds] == recorded.key.tolist()
    assert agree(np.array([p["predicted"] for p in preds]), recorded.predicted.to_numpy()).tier != DIFFERENT
    with httpx.Client(base_url=server.url, timeout=30) as c:
        one_by_one = [c.post("/predict", json=rec).json()["predictions"][0]["predicted"]
                      for rec in records_of(held_out)]
    assert agree(np.array(one_by_one), recorded.predicted.to_numpy()).tier != DIFFERENT


def test_every_new_record_is_answered_in_order(server, new_records):
    r = post(server, new_records)
    preds = answers(r)
    assert [p["key"] for p in preds] == [x["key"] for x in new_records] and r.json()["scored"] == 300
    assert all(np.isfinite(p["predicted"]) and p["errors"] == [] for p in preds)


def test_missing_required_field_refuses_that_record_only(server, new_records):
    rec = {k: v for k, v in new_records[0].items() if k != "grade"}
    r = post(server, [rec, new_records[1]])
    bad, good = answers(r)
    assert (r.json()["scored"], r.json()["refused"]) == (1, 1)
    assert bad["predicted"] is None and bad["key"] == 5001 and np.isfinite(good["predicted"]) and good["errors"] == []
    [d] = bad["errors"]
    assert d["field"] == "grade" and d["record"] == 0 and d["key"] == 5001 and "must have a value" in d["msg"]
    assert d["loc"] == ["body", "records", 0, "grade"] and d["type"] == "value_error"
    r = post(server, [rec, new_records[1]], params={"all_or_nothing": "true"})  # none scored unless all can be
    bad, held = answers(r)
    assert (r.json()["scored"], bad["predicted"], held["predicted"]) == (0, None, None)
    assert (bad["errors"][0]["field"] == "grade"
            and "another record of the request was refused" in held["errors"][0]["msg"])


def test_bad_values_and_nan_per_record_per_field(server, new_records):
    body = ('{"records": [' + json.dumps(new_records[0]) + ","
            + json.dumps({**new_records[1], "area": "big", "age": 1e39})
            + "," + json.dumps({**new_records[2], "area": "NAN_HERE", "x": 1}).replace('"NAN_HERE"', "NaN") + "]}")
    got = answers(post(server, content=body, headers={"content-type": "application/json"}))
    assert np.isfinite(got[0]["predicted"]) and got[0]["errors"] == []
    errs = {d["field"]: d["msg"] for d in got[1]["errors"]}
    assert errs["area"] == "expected a number" and errs["age"].startswith("expected a finite number within")
    assert "must have a value" in {d["field"]: d["msg"] for d in got[2]["errors"]}["area"]


def test_values_of_a_type_the_schema_excludes_refuse_the_request(server, new_records):
    ds = detail(post(server, [new_records[0], {**new_records[1], "age": True, "colour": 1.5, "key": "x"}, 7]))
    got = {(d["record"], d["field"]): d["msg"] for d in ds}
    assert got == {(1, "age"): "expected number or string, got bool",
                   (1, "colour"): "expected string or integer, got float",
                   (1, "key"): "expected a 64-bit integer (or its digits as a string)",
                   (2, None): "expected a record (a JSON object), got int"}
    assert {d["type"] for d in ds} == {"type_error"}


def test_every_record_answered_with_exact_keys_and_short_answers(server, new_records):
    preds = answers(post(server, [{}] * 300))  # 300 empty records: 300 answers, none silently lost
    assert len(preds) == 300 and all(p["predicted"] is None and p["errors"] for p in preds)
    rec = new_records[0]
    big = [{**rec, "key": 2**53 + 1}, {**rec, "key": 2**63 - 1}, {**rec, "key": str(2**62 + 3)}]
    assert [p["key"] for p in answers(post(server, big))] == [2**53 + 1, 2**63 - 1, 2**62 + 3]  # exactly as sent
    assert detail(post(server, {**rec, "key": 2**63}))[0]["field"] == "key"
    # two errors each (area and grade not sent; the others sent as null): the first MAX_LISTED_ISSUES are listed, the
    # rest counted
    huge = post(server, [{"key": i, "age": None, "colour": None} for i in range(1999)])
    preds = answers(huge)
    assert len(preds) == 1999 and len(huge.content) < 2**20, len(huge.content)
    assert sum(len([e for e in p["errors"] if e["field"]]) for p in preds) == MAX_LISTED_ISSUES
    assert f"not listed (an answer lists the first {MAX_LISTED_ISSUES} of a request)" in preds[-1]["errors"][-1]["msg"]
    long = answers(post(server, {**rec, "colour": "x" * 2**20}))[0]
    assert np.isfinite(long["predicted"]) and max(len(w["msg"]) + len(w["value"] or "") for w in long["warnings"]) < 300


def test_unknown_category_is_scored_with_a_warning(server, new_records):
    [p] = answers(post(server, {**new_records[0], "colour": "mauve"}))
    [w] = [w for w in p["warnings"] if w["field"] == "colour"]
    assert np.isfinite(p["predicted"]) and "'mauve' was not seen in training" in w["msg"] and w["type"] == "warning"


@pytest.mark.parametrize("content", [b"", b"not json", b"{", b"[1, 2]", b'"a string"', b"42", b"null", b"[]",
                                     b'{"records": []}',
                                     b'{"records": "x"}', b'[{"area": {"nested": [1, 2]}}]', b'{"area": [1e400]}',
                                     b"\xff\xfe", b'{"records": [null]}', b"[" * 200_000, b'[{"area": ' + b"1" * 5000
                                     + b"}]"])
def test_malformed_bodies_get_422_never_500(server, content):
    assert detail(post(server, content=content, headers={"content-type": "application/json"}))


def test_oversized_requests_get_413(server):
    r = post(server, [{"key": i} for i in range(2001)])  # more records than --max-records 2000
    assert r.status_code == 413 and "limit is 2000" in r.json()["detail"]
    r = post(server, content=b"[" + b" " * (5 * 2**20) + b"]", headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    def chunks():
        for _ in range(80): yield b" " * 2**16
    r = httpx.post(server.url + "/predict", content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413  # a chunked upload without Content-Length is counted too


def test_settings_come_from_the_environment_and_a_flag_given_wins(toy_run, tmp_path, new_records):
    """NBPROD_SERVICE_* sets what no flag gives; a flag given on the command line wins over the environment; a bad value
    stops serve."""
    env = {"NBPROD_SERVICE_MAX_RECORDS": "3", "NBPROD_SERVICE_MAX_BODY_BYTES": "100000"}
    with serving(tmp_path / "env.log", "--run", toy_run(), env=env) as (url, _):
        r = httpx.post(url + "/predict", json=new_records[:4], timeout=60)
        assert r.status_code == 413 and "the limit is 3" in r.json()["detail"]
        assert httpx.post(url + "/predict", json=new_records[:3], timeout=60).status_code == 200
        r = httpx.post(url + "/predict", content=b" " * 100_001, headers={"content-type": "application/json"},
                       timeout=60)
        assert r.status_code == 413 and "larger than 100000 bytes" in r.json()["detail"]
    with serving(tmp_path / "flag.log", "--run", toy_run(), "--max-records", "5", env=env) as (url, _):
        assert httpx.post(url + "/predict", json=new_records[:5], timeout=60).status_code == 200
        assert "the limit is 5" in httpx.post(url + "/predict", json=new_records[:6], timeout=60).json()["detail"]
    r = cli("serve", "--run", toy_run(), "--port", "0", env={"NBPROD_SERVICE_MAX_RECORDS": "many"}, timeout=120)
    assert r.returncode == 1 and "max_records" in r.stderr, r.stderr


def test_one_json_log_line_per_request_with_request_id(server, new_records):
    r = post(server, new_records[0], headers={"x-request-id": "test-req-42"})
    assert r.headers["x-request-id"] == "test-req-42"
    time.sleep(0.2)
    lines = [json.loads(l) for l in server.log.read_text().splitlines() if l.startswith("{")]
    [line] = [l for l in lines if l.get("request_id") == "test-req-42"]
    assert line["status"] == 200 and line["path"] == "/predict" and line["records"] == 1 and line["latency_ms"] > 0


def test_eight_concurrent_clients_good_and_hostile_for_thirty_seconds(server, new_records):
    """Four clients send good batches, four send hostile requests; every good record gets its prediction (the one it
    gets alone, within RTOL: batches of other sizes may sum in another order), nothing gets a 5xx."""
    expected = {p["key"]: p["predicted"] for p in answers(post(server, new_records))}
    rec = new_records[0]
    hostile = [dict(json=[{}] * 300), dict(json={**rec, "age": 1e39}), dict(json={**rec, "key": 2**63}),
               dict(json=[{**rec, "area": True}, 7]),
               dict(json={**rec, "colour": "x" * 100_000}), dict(json=[{"key": i} for i in range(1500)]),
               dict(content=b'{"records": [{"a": '),
               dict(json={**rec, "area": "9" * 400}), dict(json=[{**rec, "key": str(2**53 + 1)}])]
    stop, results, lock = time.time() + 30, [], threading.Lock()
    def client(seed, good):
        rng, mine = random.Random(seed), []
        with httpx.Client(base_url=server.url, timeout=60) as c:
            while time.time() < stop:
                if good:
                    batch = rng.sample(new_records, rng.choice([1, 1, 1, 5, 50]))
                    r = c.post("/predict", json=batch)
                    ok = (r.status_code == 200 and [p["key"] for p in r.json()["predictions"]] == [b["key"]
                        for b in batch]
                          and agree(np.array([p["predicted"] for p in r.json()["predictions"]]),
                                    np.array([expected[b["key"]] for b in batch])).tier != DIFFERENT)
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
    """schemathesis generates requests from /openapi.json, valid and invalid: every answer is one the schema documents,
    never a 5xx."""
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    r = subprocess.run([schemathesis, "run", server.url + "/openapi.json", "--max-examples", "150", "--seed", "1",
                        "--workers", "1",
                        "--no-color"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "passed" in r.stdout and "failure" not in r.stdout.split("SUMMARY")[-1].lower(), r.stdout[-2000:]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = (pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (Debian's package 'chromium'; "
                                                              ".ci/run installs it as root)"))


def rendered(url, profile):
    """The page's DOM after its scripts ran in headless Chromium, which can reach 127.0.0.1 and no other host (every
    name resolves to nothing)."""
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        f"--user-data-dir={profile}",
                        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=15000",
                        "--dump-dom", url],
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
    """The control: FastAPI's stock /docs (its assets from a CDN) in the same browser stays empty, so the block above is
    real."""
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
