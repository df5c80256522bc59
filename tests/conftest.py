"""Shared fixtures: project settings and real papermill training runs in a temporary run store."""
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from filelock import FileLock
from nbprod.config import get_settings
from nbprod.job import run_training

BIN = Path(sys.executable).parent


def pytest_report_header(config):
    "Say so when the checkout has uncommitted changes: the tests' runs are then of uncommitted code, as a user's would be."
    root = get_settings().root
    r = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        return ("uncommitted changes in the checkout: the runs the tests train are of uncommitted code, so the tests that promote one "
                "to production or build its image see it refused, as yours would be; commit (or stash) first")


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory, worker_id):
    "A folder that every pytest-xdist worker of this session shares (the session's own folder when there is one process)."
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session", autouse=True)
def signing_key(shared_dir):
    """The tests' own run signing key (created by the first training run, in any worker), so that they neither use nor
    create the user's; one for all workers, since they share trained runs."""
    os.environ["RUN_SIGNING_KEY_FILE"] = str(shared_dir / "keys" / "signing.key")
    os.environ.pop("RUN_SIGNING_KEY", None)
    yield os.environ["RUN_SIGNING_KEY_FILE"]


@pytest.fixture(scope="session")
def settings():
    return get_settings()


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def train_job(settings, runs_dir, shared_dir):
    """Run the real training job through papermill, once per distinct tag and parameter set in the whole session: the
    first worker to need a run trains it into a store of its own under `shared_dir` (the others wait on its lock), and
    each worker takes a copy of the run, with its data snapshot, into its `runs_dir`, where its tests may promote,
    damage or list runs without touching another worker's."""
    cache = {}

    def run(tag="a", **params):
        key = (tag, tuple(sorted(params.items())))
        if key not in cache:
            store = shared_dir / "trained" / hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            store.parent.mkdir(exist_ok=True)
            with FileLock(f"{store}.lock"):
                if not (store / "run-id").is_file():
                    made = run_training(params, settings=replace(settings, runs_dir=store), progress=False)
                    (store / "run-id").write_text(made.name)
            name = (store / "run-id").read_text()
            shutil.copytree(store / name, runs_dir / name)
            shutil.copytree(replace(settings, runs_dir=store).snapshots_dir, replace(settings, runs_dir=runs_dir).snapshots_dir,
                            dirs_exist_ok=True)
            cache[key] = runs_dir / name
        return cache[key]

    return run


def house_prices_cli(*args, cwd=None, env=None, timeout=600):
    """Run the installed `house-prices` command in a fresh process."""
    return subprocess.run([str(BIN / "house-prices"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def free_port():
    "A free TCP port on loopback."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(log_path, *args, env=None, timeout=60):
    """A real `house-prices serve ARGS...` process on a free loopback port, its output in `log_path`: yields (url, process) once
    /health answers, and stops it after."""
    import httpx
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BIN / "house-prices"), "serve", "--port", str(port), *map(str, args)], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        url, deadline = f"http://127.0.0.1:{port}", time.time() + timeout
        try:
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200: break
                except httpx.TransportError: time.sleep(0.2)
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"server did not start (exit code {proc.poll()}):\n" + Path(log_path).read_text())
            yield url, proc
        finally:
            if proc.poll() is None: proc.terminate()
            proc.wait(timeout=30)
