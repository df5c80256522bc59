"""What the library's tests share besides fixtures: its toy projects made the process's project for a while, and its
command run in a fresh process, as a project's command would be. (Fixtures are in conftest.py; test modules import
from here, never from a conftest, whose module name another folder's tests use too.)"""
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from nbprod.project import PROJECT_ENV_VAR, use_project
from nbprod.toy import toy_project, use_toy_project

TASKS = ("regression", "classification")
# What `use_toy_project` sets for the processes it starts, put back when a toy is no longer the process's project
_ENVIRON = (PROJECT_ENV_VAR, "JUPYTER_PATH", *(toy_project(t).root_env_var for t in TASKS))


@contextmanager
def using_toy(task: str, root: Path):
    "The toy project of `task`, laid out in `root` (a git checkout with one commit), as the process's project; then none."
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
    return subprocess.run(["git", "-C", str(root), *GIT_IDENTITY, *args], check=True, capture_output=True, text=True, timeout=60).stdout


def commit_all(root: Path, message: str) -> str:
    "Commit everything in `root` (made a git checkout if it is not one, its runs and kernels ignored); return the commit."
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
