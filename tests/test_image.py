"""The service's container image, built with Podman from a real training run on a base image made from Debian's packages:
the smoke test inside the build, what the image holds (the runtime lock only, a user without privileges, a health check,
the base image recorded by digest), test.csv scored inside the image as on the host, to the bit (also with another run
from a run store mounted read-only over the baked one), and the image's service
answering on loopback with its health check passing.

Skipped, with the reason, without podman, buildah and debootstrap or without root (.ci/run installs them as root), and
under a Python no Debian release ships (3.12). `podman run` cannot start containers on these machines (crun cannot set
rlimits), so the image is run with `buildah run --isolation chroot`."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import httpx
import nbprod
import pandas as pd
import pytest

from conftest import BIN, house_prices_cli

ROOT = BIN.parent.parent
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
SUITE = {"3.11": "bookworm", "3.13": "trixie"}.get(PYTHON)  # the Debian release whose python3 is this Python
MISSING = [t for t in ("podman", "buildah", "debootstrap") if not shutil.which(t)] + ([] if os.geteuid() == 0 else ["root"])
pytestmark = [pytest.mark.skipif(bool(MISSING), reason=f"building images needs podman, buildah, debootstrap and root: missing {', '.join(MISSING)}"),
              pytest.mark.skipif(SUITE is None, reason=f"no Debian release ships Python {PYTHON} to make a base image from")]
BASE = f"localhost/debian-python:{PYTHON}"
ISOLATION = {"BUILDAH_ISOLATION": "chroot"}  # podman's default isolation cannot run here


# buildah's chroot isolation runs a sealed in-memory copy of itself; now and then, on a loaded machine, the kernel refuses
# the seal (EBUSY: pages of the copy still referenced) before anything runs in the container, and the same command again
# succeeds. Only that failure is retried.
SEAL_BUSY = "sealing memfd copy: Device or resource busy"


def run(*cmd, timeout=600, env=None, tries=3, **kw):
    for _ in range(tries):
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env={**os.environ, **ISOLATION, **(env or {})}, **kw)
        if r.returncode == 0 or SEAL_BUSY not in r.stderr: break
    assert r.returncode == 0, f"{' '.join(map(str, cmd[:4]))} failed:\n{(r.stdout + r.stderr)[-4000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def base():
    "The base image, made once from Debian's packages (kept in podman's store for later runs)."
    if subprocess.run(["podman", "image", "exists", BASE]).returncode != 0:
        run(BIN / "house-prices", "image", "debian-base", SUITE, BASE, timeout=1800)
    return BASE


@pytest.fixture(scope="module")
def built(base, train_job, job_root, tmp_path_factory):
    """A copy of a real run (its deployment record is written into it), and the image built from it by `house-prices image
    build`, in the checkout the run was made in (`job_root`: its commit holds the code under test)."""
    run_dir = tmp_path_factory.mktemp("store") / train_job().name
    shutil.copytree(train_job(), run_dir)
    out = run(BIN / "house-prices", "image", "build", "--run", run_dir, "--base", base, "--image", "localhost/service-test", "--engine", "podman",
              timeout=2400, env={"HOUSE_PRICES_ROOT": str(job_root)})
    record = json.loads((run_dir / "deployments.jsonl").read_text().splitlines()[-1])
    yield record, run_dir, out
    subprocess.run(["podman", "rmi", "--force", record["image"]], capture_output=True)
    subprocess.run(["podman", "image", "prune", "--force"], capture_output=True)  # the build's stages, ~0.8 GB each


@pytest.fixture(scope="module")
def container(built):
    "A working container of the image (buildah), removed after the module."
    ctr = run("buildah", "from", "--pull-never", built[0]["image"]).strip()
    yield ctr
    subprocess.run(["buildah", "rm", ctr], capture_output=True)


@pytest.fixture
def key(signing_key, tmp_path):
    "The run signing key, owned by the image's user and readable by nobody else (as a secret mounted for that user would be)."
    k = tmp_path / "signing.key"
    shutil.copy(signing_key, k)
    os.chown(k, 10001, 10001)
    k.chmod(0o600)
    return k


def test_the_image_is_recorded_with_its_base_by_digest_and_runs_unprivileged_with_a_health_check(built, base):
    record, run_dir, out = built
    assert record["image"] == f"localhost/service-test:{run_dir.name}" and "recorded in the run's deployments.jsonl" in out
    assert record["base"] == base and record["base_digest"] == run("podman", "image", "inspect", "--format", "{{.Digest}}", base).strip()
    assert record["lock"] == f"{PYTHON}/runtime.lock" and record["python"] == PYTHON
    assert record["library"]["version"] == nbprod.__version__ and record["library"]["wheel"].startswith(f"nbprod-{nbprod.__version__}-")
    assert len(record["library"]["sha256"]) == 64  # the wheel the image installed, by content
    code = json.loads((run_dir / "manifest.json").read_text())["code"]  # the project: a wheel of the run's commit, at the run's version
    assert record["project"]["commit"] == code["git_commit"] and record["project"]["version"] == code["package_version"]
    assert record["project"]["wheel"].startswith(f"house_prices-{code['package_version']}-") and len(record["project"]["sha256"]) == 64
    assert record["numerics"]["tier"] == "bit-identical" and record["numerics"]["rows"] > 0, record["numerics"]  # as the smoke test found it inside
    [info] = json.loads(run("podman", "image", "inspect", record["image"]))
    cfg = info["Config"]
    assert cfg["User"] == "10001" and cfg["Entrypoint"] == ["house-prices"] and cfg["Cmd"][0] == "serve"
    assert "http://127.0.0.1:8000/health" in " ".join(info["Healthcheck"]["Test"])  # kept: built in Docker's format
    assert cfg["Labels"]["org.opencontainers.image.base.digest"] == record["base_digest"] and cfg["Labels"]["run.id"] == run_dir.name
    assert record["size_bytes"] == info["Size"] > 0


def test_the_build_scored_rows_and_the_image_holds_the_runtime_lock_only(built, container):
    assert "smoke test passed: 20 rows scored" in run("buildah", "run", "--isolation", "chroot", container, "--", "cat", "/usr/share/doc/service-smoke-test.txt")
    check = ("import importlib.util as u, importlib.metadata as md, json;"
             "print(json.dumps(sorted(m for m in ('jupyterlab', 'notebook', 'papermill', 'nbdev', 'IPython', 'pytest') if u.find_spec(m))));"
             "print(json.dumps(sorted(d.metadata['Name'].lower() for d in md.distributions())))")
    dev_only, installed = run("buildah", "run", "--isolation", "chroot", container, "--", "python", "-c", check).splitlines()
    assert dev_only == "[]"
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
    pins = {norm(line.split("==")[0]) for line in (ROOT / "requirements" / PYTHON / "runtime.lock").read_text().splitlines() if "==" in line and not line.startswith(" ")}
    assert {norm(n) for n in json.loads(installed)} <= pins | {"house-prices", "nbprod"}  # nothing beyond the runtime lock, the library and the project
    assert run("buildah", "run", "--isolation", "chroot", container, "--", "id", "-u").strip() == "10001"
    assert not run("buildah", "run", "--isolation", "chroot", container, "--", "sh", "-c", "ls /run/secrets 2>/dev/null; true").strip()  # no key baked in


def test_the_image_holds_the_kernels_compiled_for_its_run(built, container, key):
    "Numba's cache from the build's smoke stage is in the image: loading the model (whose check runs the kernels) compiles none."
    load = "from nbprod.predict import Predictor; p = Predictor.load(); assert p._fast is not None, p.slow_reason"
    out = run("buildah", "run", "--isolation", "chroot", "--env", "NUMBA_DEBUG_CACHE=1", "-v", f"{key}:/run/secrets/signing_key:ro", container, "--",
              "python", "-c", load)
    assert "[cache] data loaded from '/var/cache/numba/" in out and "[cache] data saved" not in out, out


def test_test_csv_scored_inside_the_image_as_on_the_host(built, container, settings, key, tmp_path):
    record, run_dir, _ = built
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)  # the image's user writes here
    run("buildah", "run", "--isolation", "chroot", "-v", f"{settings.scoring_file.parent}:/data:ro", "-v", f"{out}:/out", "-v", f"{key}:/run/secrets/signing_key:ro",
        container, "--", "house-prices", "predict", f"/data/{settings.scoring_file.name}", "-o", "/out/scored.csv", "--no-progress")
    r = house_prices_cli("predict", "--run", run_dir, settings.scoring_file, "-o", tmp_path / "host.csv", "--no-progress")
    assert r.returncode == 0, r.stderr
    inside, host = pd.read_csv(out / "scored.csv"), pd.read_csv(tmp_path / "host.csv")
    assert len(inside) == 1459 and inside.equals(host), "the image scores test.csv otherwise than the host"


def test_the_service_answers_from_the_image_and_its_health_check_passes(built, container, key, settings, tmp_path):
    "The image's own service, its model verified at start-up, on loopback (buildah's chroot shares the host's network); then the image's HEALTHCHECK command."
    record, run_dir, _ = built
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(["buildah", "run", "--isolation", "chroot", "-v", f"{key}:/run/secrets/signing_key:ro", container, "--",
                             "house-prices", "serve", "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ISOLATION})
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json() == {"status": "ok", "run_id": run_dir.name}: break
            except httpx.TransportError: time.sleep(0.5)
        else: pytest.fail("the image's service did not start:\n" + (tmp_path / "serve.log").read_text()[-3000:])
        first = pd.read_csv(settings.scoring_file, nrows=1, keep_default_na=False, na_values=["NA"]).astype(object)
        house = {k: None if pd.isna(v) else v for k, v in first.iloc[0].items()}  # test.csv's first house
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json=house, timeout=30)
        assert r.status_code == 200 and r.json()["scored"] == 1 and r.json()["predictions"][0]["SalePrice"] > 0, r.text
        [info] = json.loads(run("podman", "image", "inspect", record["image"]))
        check = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in info["Healthcheck"]["Test"][1:]]  # ["CMD", ...]: the command itself
        run("buildah", "run", "--isolation", "chroot", container, "--", *check)  # exit 0: healthy
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        subprocess.run(["pkill", "-f", f"serve --host 127.0.0.1 --port {port}"], capture_output=True)  # the service, if buildah left it behind


def test_a_run_store_mounted_read_only_over_the_baked_one_is_served_instead(built, container, key, settings, train_job, tmp_path):
    "Another run without a rebuild: a run store mounted read-only over /srv/runs, whose production run the image then uses."
    other = train_job(gbm_n_estimators=60)  # not the baked run
    assert other.name != built[1].name
    store, out = tmp_path / "runs", tmp_path / "out"
    shutil.copytree(other, store / other.name)
    (store / "aliases.json").write_text(json.dumps({"production": other.name}))
    out.mkdir()
    out.chmod(0o777)
    said = run("buildah", "run", "--isolation", "chroot", "-v", f"{store}:/srv/runs:ro", "-v", f"{settings.scoring_file.parent}:/data:ro", "-v", f"{out}:/out",
               "-v", f"{key}:/run/secrets/signing_key:ro", container, "--", "house-prices", "predict", f"/data/{settings.scoring_file.name}", "-o", "/out/scored.csv",
               "--no-progress")
    assert f"run {other.name} -> /out/scored.csv" in said, said
    r = house_prices_cli("predict", "--run", other, settings.scoring_file, "-o", tmp_path / "host.csv", "--no-progress")
    assert r.returncode == 0 and pd.read_csv(out / "scored.csv").equals(pd.read_csv(tmp_path / "host.csv"))
