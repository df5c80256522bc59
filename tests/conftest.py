"""Shared fixtures: project settings and real papermill training runs in a temporary run store."""
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from nbprod.config import get_settings
from nbprod.job import run_training

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def signing_key(tmp_path_factory):
    "The tests' own run signing key (created by the first training run), so that they neither use nor create the user's."
    os.environ["RUN_SIGNING_KEY_FILE"] = str(tmp_path_factory.mktemp("keys") / "signing.key")
    os.environ.pop("RUN_SIGNING_KEY", None)
    yield os.environ["RUN_SIGNING_KEY_FILE"]


@pytest.fixture(scope="session")
def settings():
    return get_settings()


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def train_job(settings, runs_dir):
    """Run the real training job through papermill, once per distinct parameter set (cached for the session)."""
    cache = {}

    def run(tag="a", **params):
        key = (tag, tuple(sorted(params.items())))
        if key not in cache:
            cache[key] = run_training(params, settings=replace(settings, runs_dir=runs_dir), progress=False)
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
