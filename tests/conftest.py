"""Shared fixtures: project settings and real papermill training runs in a temporary run store."""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from house_prices.core.config import get_settings
from house_prices.core.job import run_training

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
