"""Code that is in no commit: a run trained from a checkout with uncommitted changes is refused `production` unless forced
with a reason (which the log keeps), and the image, built from the commit a run was made at, refuses it, and refuses a
checkout at another commit than the run's. Each run records the project's version from git (setuptools-scm)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN, GIT_IDENTITY, house_prices_cli

ROOT = BIN.parent.parent
GIT = ["git", *GIT_IDENTITY]


def train_in(clone: Path, store: Path) -> Path:
    r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", store, "-p", "gbm_n_estimators", 60, env={"HOUSE_PRICES_ROOT": str(clone)})
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.split("run: ", 1)[1].split()[0])


def clone(dest: Path) -> Path:
    "A clone of this checkout's HEAD at `dest`, to be changed without touching the checkout."
    subprocess.run(["git", "clone", "--quiet", "--shared", ROOT, dest], check=True, timeout=120)
    return dest


def version_at(checkout: Path) -> str:
    "The version setuptools-scm gives the checkout, asked in a process of its own, as a build would."
    return subprocess.run([sys.executable, "-m", "setuptools_scm", "-r", checkout, "-c", checkout / "pyproject.toml"], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def dirty_run(tmp_path_factory):
    "A run trained from a clone with a line not yet committed, in a store of its own."
    d = clone(tmp_path_factory.mktemp("dirty") / "project")
    with open(d / "README.md", "a") as f: f.write("\nA line not yet committed.\n")
    return train_in(d, d.parent / "runs")


def test_a_run_records_the_version_git_gives_its_checkout(dirty_run):
    clone = dirty_run.parent.parent / "project"
    code = json.loads((dirty_run / "manifest.json").read_text())["code"]
    head = subprocess.run(["git", "-C", clone, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert code["git_commit"] == head and code["git_dirty"] is True and len(code["git_diff_sha256"]) == 64
    assert code["package_version"].split("+")[0] == version_at(clone).split("+")[0]  # 0.1.devN: N commits
    assert f"+g{head[:9]}" in code["package_version"] and ".d20" in code["package_version"], code  # the commit, and a date: uncommitted changes


def test_production_takes_only_a_run_of_committed_code_unless_forced_with_a_reason(dirty_run, train_job):
    from nbprod.compare import PromotionRefused, promote, promotions
    store, commit = dirty_run.parent, json.loads((dirty_run / "manifest.json").read_text())["code"]["git_commit"]
    with pytest.raises(PromotionRefused, match=rf"made from uncommitted code \(commit {commit[:12]} with changes.*--force --reason"):
        promote(dirty_run.name, "production", store)
    assert not (store / "aliases.json").exists()
    assert promote(dirty_run.name, "staging", store).objections == []  # other aliases take any run
    forced = promote(dirty_run.name, "production", store, force=True, reason="a fix, committed since")
    assert forced.forced and forced.reason == "a fix, committed since" and "uncommitted code" in forced.objections[0]
    assert promotions(store)[-1] == forced
    clean = store / train_job().name  # the tests' own runs are of committed code (conftest's job_root)
    shutil.copytree(train_job(), clean)
    r = house_prices_cli("runs", "--runs-dir", store, "promote", clean.name)
    assert r.returncode == 0, r.stderr
    code = json.loads((clean / "manifest.json").read_text())["code"]
    assert code["git_dirty"] is False and f"code: commit {code['git_commit'][:12]}, nothing uncommitted" in promotions(store)[-1].checked


def image(run: Path):
    return house_prices_cli("image", "build", "--run", run, timeout=120)


def test_the_image_refuses_a_run_of_uncommitted_code(dirty_run):
    r = image(dirty_run)
    assert r.returncode == 1 and "the image is built from the commit the run was made at, but it was made from uncommitted code" in r.stderr, r.stderr
    assert not (dirty_run / "deployments.jsonl").exists()


def test_the_image_refuses_a_checkout_at_another_commit_than_the_runs(tmp_path):
    other = clone(tmp_path / "project")
    subprocess.run([*GIT, "-C", other, "commit", "--quiet", "--allow-empty", "-m", "a commit this checkout does not have"], check=True)
    run = train_in(other, tmp_path / "runs")
    commit = json.loads((run / "manifest.json").read_text())["code"]["git_commit"]
    r = image(run)
    assert r.returncode == 1 and f"the run was made at {commit[:12]}: git checkout {commit[:12]}" in r.stderr, r.stderr
    assert not (run / "deployments.jsonl").exists()
