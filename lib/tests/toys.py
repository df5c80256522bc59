"""What the library's tests share besides fixtures: its toy projects made the process's project for a while, and its
command run in a fresh process, as a project's command would be. (Fixtures are in conftest.py; test modules import
from here, never from a conftest, whose module name another folder's tests use too.)"""
import math
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from nbprod.project import PROJECT_ENV_VAR, use_project
from nbprod.toy import toy_project, toy_rows, use_toy_project

TASKS = ("regression", "classification")
# What `use_toy_project` sets for the processes it starts, put back when a toy is no longer the process's project
_ENVIRON = (PROJECT_ENV_VAR, "JUPYTER_PATH", *(toy_project(t).root_env_var for t in TASKS))


@contextmanager
def using_toy(task: str, root: Path):
    """The toy project of `task`, laid out in `root` (a git checkout with one commit), as the process's project; then
    none."""
    saved = {k: os.environ.get(k) for k in _ENVIRON}
    fresh = not (root / ".git").is_dir()
    try:
        use_toy_project(task, root)  # the same files each time: the checkout stays clean
        if fresh: commit_all(root, "the toy project")
        yield root
    finally:
        use_project(None)
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


GIT_IDENTITY = ["-c", "user.name=tests", "-c", "user.email=tests@example.invalid"]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *GIT_IDENTITY, *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def commit_all(root: Path, message: str) -> str:
    """Commit everything in `root` (made a git checkout if it is not one, its runs and kernels ignored); return the
    commit."""
    if not (root / ".git").is_dir():
        git(root, "init", "--quiet")
        (root / ".gitignore").write_text("runs/\njupyter/\n")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "--allow-empty", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


def cli(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    "The library's command (`python -m nbprod.cli`, a project's command under another name) on the process's project."
    return subprocess.run([sys.executable, "-m", "nbprod.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def cli_process(*args, **popen) -> subprocess.Popen:
    "The library's command, started and left running (to stop it, to serve)."
    return subprocess.Popen([sys.executable, "-m", "nbprod.cli", *map(str, args)], **popen)


def free_port() -> int:
    "A free TCP port on loopback."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(log_path: Path, *args, env=None, timeout=60):
    """A real `python -m nbprod.cli serve ARGS...` process of the process's project on a free loopback port, its output
    in `log_path`: yields (url, process) once /health answers, and stops it after."""
    port = free_port()
    with open(log_path, "w") as log:
        proc = cli_process("serve", "--port", port, *args, stdout=log, stderr=subprocess.STDOUT,
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


def records_of(df) -> list[dict]:
    "A frame's rows as JSON records, a missing value as null."
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]


def unseen_csv(folder: Path, n: int, seed: int, start: int) -> Path:
    """`n` rows of the toy's population that no run trained on (ids from `start`, another `seed`), without the target,
    as `folder/new.csv`."""
    path = folder / "new.csv"
    toy_rows(n, seed=seed, target=False, start=start).to_csv(path, index=False)
    return path
