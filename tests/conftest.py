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


GIT_IDENTITY = ["-c", "user.name=tests", "-c", "user.email=tests@example.invalid"]


def has_uncommitted_changes(root: Path) -> bool:
    "Whether the git checkout at `root` has changes or new files not committed (False outside git)."
    r = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True)
    return r.returncode == 0 and bool(r.stdout.strip())


def pytest_report_header(config):
    if has_uncommitted_changes(get_settings().root):
        return "uncommitted changes in the checkout: the tests train their runs in a clone in which those changes are committed"


def committed_checkout(root: Path, dest: Path) -> Path:
    """A clone of the checkout at `root` in which its uncommitted changes and new files are committed: the code under test,
    as a commit, so that the tests' runs are of committed code (what production and the image take) in any checkout."""
    git = lambda *args, **kw: subprocess.run(["git", *GIT_IDENTITY, *map(str, args)], check=True, capture_output=True, timeout=300, **kw)
    git("clone", "--quiet", "--shared", root, dest)
    if diff := git("-C", root, "diff", "HEAD", "--binary").stdout:
        git("-C", dest, "apply", "--binary", "-", input=diff)
    for name in filter(None, git("-C", root, "ls-files", "--others", "--exclude-standard", "-z").stdout.decode().split("\0")):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    git("-C", dest, "add", "-A")
    git("-C", dest, "commit", "--quiet", "--allow-empty", "-m", "the checkout's uncommitted changes, committed for the tests")
    return dest


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
def job_root(settings, shared_dir):
    """Where the tests' training runs are made: the project's checkout when it has nothing uncommitted (CI's fresh clone),
    else one clone, for all workers, in which its changes are committed (`committed_checkout`)."""
    if not has_uncommitted_changes(settings.root): return settings.root
    dest = shared_dir / "checkout"
    with FileLock(f"{dest}.lock"):
        if not (dest / ".git").is_dir(): committed_checkout(settings.root, dest)
    return dest


@pytest.fixture(scope="session")
def train_job(settings, runs_dir, shared_dir, job_root):
    """Run the real training job through papermill, once per distinct tag and parameter set in the whole session: the
    first worker to need a run trains it into a store of its own under `shared_dir` (the others wait on its lock), and
    each worker takes a copy of the run, with its data snapshot, into its `runs_dir`, where its tests may promote,
    damage or list runs without touching another worker's. The runs are made from `job_root`: of committed code."""
    cache = {}

    def run(tag="a", **params):
        key = (tag, tuple(sorted(params.items())))
        if key not in cache:
            store = shared_dir / "trained" / hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            store.parent.mkdir(exist_ok=True)
            with FileLock(f"{store}.lock"):
                if not (store / "run-id").is_file():
                    made = run_training(params, settings=replace(settings, root=job_root, runs_dir=store), progress=False)
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
