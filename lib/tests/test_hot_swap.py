"""A running service picks up a new production run without downtime: on SIGHUP and on POST /admin/reload (with the admin
token), under 8 concurrent clients; no request is lost, each answer names the run that gave it, and a model that fails
verification leaves the old one serving."""
import shutil
import signal
import threading
import time

import httpx
import pytest

from nbprod.compare import promote
from nbprod.integrity import sign_manifest
from nbprod.manifest import Manifest
from nbprod.runs import read_json, write_json
from nbprod.toy import toy_project, toy_rows

from toys import records_of, serving

TOKEN = "a-test-admin-token-of-some-length"


@pytest.fixture()
def service(toy_run, tmp_path):
    """The service without --run, on a run store of its own where the base run holds production; the other run is the
    same model under another id (the gate lets it through)."""
    base, other = toy_run(), toy_run(tag="b")
    store = tmp_path / "root" / "runs"
    for run in (base, other): shutil.copytree(run, store / run.name)
    promote(base.name, "production", store)
    (tmp_path / "token").write_text(TOKEN)
    with serving(tmp_path / "server.log", "--admin-token-file", tmp_path / "token",
                 env={toy_project().root_env_var: str(store.parent)}) as (url, proc):
        yield type("Service", (), {"url": url, "proc": proc, "store": store, "base": base.name, "other": other.name,
                                   "log": tmp_path / "server.log"})


def load(client, service, record, stop, answers, failures):
    """One client: POST one record again and again until told to stop; keep (client, time sent, time answered, run id)
    of each answer."""
    with httpx.Client(base_url=service.url, timeout=30) as c:
        while not stop.is_set():
            try:
                sent = time.monotonic()
                r = c.post("/predict", json=record)
                if r.status_code != 200: failures.append(r.status_code); continue
                answers.append((client, sent, time.monotonic(), r.json()["run_id"]))
            except httpx.HTTPError as e: failures.append(repr(e))


def test_sighup_swaps_the_model_under_load_and_loses_no_request(service):
    [record] = records_of(toy_rows(1, seed=5, target=False))
    stop, answers, failures = threading.Event(), [], []
    clients = [threading.Thread(target=load, args=(k, service, record, stop, answers, failures)) for k in range(8)]
    for t in clients: t.start()
    time.sleep(1.0)
    promote(service.other, "production", service.store)
    signalled = time.monotonic()
    service.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(run == service.other for *_, run in answers[-50:]): time.sleep(0.1)
    time.sleep(1.0)
    stop.set()
    for t in clients: t.join(timeout=60)
    assert not failures, failures[:5]
    assert {run for *_, run in answers} == {service.base, service.other} and len(answers) > 100
    # each client, asking one request after the other: the old run's answers, then the new run's, never back
    for k in range(8):
        runs = [run for client, *_, run in answers if client == k]
        assert runs == sorted(runs, key=lambda run: run == service.other), k
    # the first answer of the new run came back
    swapped = min(answered for *_, answered, run in answers if run == service.other)
    assert swapped > signalled
    later = [run for _, sent, _, run in answers if sent > swapped]  # asked after that: the new run answers every one
    assert len(later) >= 20 and set(later) == {service.other}
    m = httpx.get(service.url + "/model").json()
    assert (m["run_id"] == service.other and m["last_reload"]["status"] == "swapped"
            and m["last_reload"]["previous"] == service.base)


def test_admin_reload_needs_the_token_and_a_failed_model_leaves_the_old_one_serving(service):
    r = httpx.post(service.url + "/admin/reload")
    assert r.status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(service.url + "/admin/reload", headers=auth).json()["status"] == "unchanged"
    # a run (the other one, signed under this id) whose model file was damaged after training
    broken = service.store / "20990101T000000Z-bad000"
    shutil.copytree(service.store / service.other, broken)
    write_json(broken / "manifest.json", {**read_json(broken / "manifest.json"), "run_id": broken.name})
    sign_manifest(broken, Manifest.read(broken / "manifest.json"))
    with open(broken / "model.joblib", "r+b") as f: f.seek(100); b = f.read(1); f.seek(100); f.write(bytes([b[0] ^ 1]))
    promote(broken.name, "production", service.store, force=True, reason="test: a damaged model")
    r = httpx.post(service.url + "/admin/reload", headers=auth)
    assert r.status_code == 409 and r.json()["status"] == "failed" and r.json()["run_id"] == service.base
    m = httpx.get(service.url + "/model").json()
    assert (m["run_id"] == service.base and m["last_reload"]["status"] == "failed"
            and "sha256" in m["last_reload"]["error"])
    assert httpx.post(service.url + "/predict", json={}).status_code == 200  # still serving
    assert '"event": "reload"' in service.log.read_text()
