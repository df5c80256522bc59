"""Fixtures of the library's tests: its toy projects (a regression and a classification, `nbprod.toy`), each laid out
once per test process as a git checkout, and real training runs of them, made by the job runner through papermill.
No project's data or code is involved: the library is tested here, once, whatever project is installed beside it."""
import os

import pytest

from nbprod.job import run_training

from toys import TASKS, using_toy


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory, worker_id):
    """A folder that every pytest-xdist worker of this session shares (the session's own folder when there is one
    process)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session", autouse=True)
def signing_key(shared_dir):
    """The session's run signing key, the same file as the example's tests use (a worker may run both: one key for
    every run it trains), so that the tests neither use nor create the user's."""
    os.environ["RUN_SIGNING_KEY_FILE"] = str(shared_dir / "keys" / "signing.key")
    os.environ.pop("RUN_SIGNING_KEY", None)
    yield os.environ["RUN_SIGNING_KEY_FILE"]


@pytest.fixture(scope="session")
def toy_roots(tmp_path_factory):
    "Where this process lays out each toy project: {task: folder}."
    return {task: tmp_path_factory.mktemp(f"toy-{task}") for task in TASKS}


@pytest.fixture(scope="module", autouse=True)
def toy(toy_roots):
    """The toy regression project is the project of each test module (and of the processes it starts), and none after
    it: a test process may run the example's modules too."""
    with using_toy("regression", toy_roots["regression"]) as root:
        yield root


@pytest.fixture(scope="session")
def toy_run(toy_roots):
    """A real training run of a toy project, made once per task, tag and parameter set in this process, into the toy's
    `runs/`: `toy_run()`, `toy_run("classification")`, `toy_run(seed=1)`; another tag is another run of the same
    parameters (`toy_run(tag="b")`: the same model and held-out rows under another run id)."""
    made = {}

    def run(task="regression", tag="a", **params):
        key = (task, tag, tuple(sorted(params.items())))
        if key not in made:
            with using_toy(task, toy_roots[task]):
                made[key] = run_training(params, progress=False)
        return made[key]

    return run
