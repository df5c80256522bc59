"""Code that is in no commit: a run trained from a checkout with uncommitted changes records it in its version (from
git, setuptools-scm's scheme), is refused `production` unless forced with a reason (which the log keeps), and the image,
built from the commit a run was made at, refuses it, and refuses a checkout at another commit than the run's. On runs of
the toy trained from clones of its checkout, through the real command."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nbprod.compare import PromotionRefused, promote, promotions
from nbprod.runs import read_json
from nbprod.toy import toy_project

from toys import cli, git


def clone(toy: Path, dest: Path) -> Path:
    "A clone of the toy's checkout at `dest`, to be changed without touching the toy."
    subprocess.run(["git", "clone", "--quiet", "--shared", str(toy), str(dest)], check=True, capture_output=True,
                   timeout=60)
    return dest


def train_in(checkout: Path, store: Path) -> Path:
    "A run of the toy trained from `checkout` (the project's root for the command) into `store`."
    r = cli("train", "--no-progress", "-p", "runs_dir", store, env={toy_project().root_env_var: str(checkout)})
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.split("run: ", 1)[1].split()[0])


@pytest.fixture(scope="module")
def dirty_run(toy, tmp_path_factory):
    "A run trained from a clone with a line not yet committed, in a store of its own."
    d = clone(toy, tmp_path_factory.mktemp("dirty") / "project")
    with open(d / ".gitignore", "a") as f: f.write("# a line not yet committed\n")
    return train_in(d, d.parent / "runs")


def test_a_run_records_the_version_git_gives_its_checkout(dirty_run):
    code = read_json(dirty_run / "manifest.json")["code"]
    head = git(dirty_run.parent.parent / "project", "rev-parse", "HEAD").strip()
    assert code["git_commit"] == head and code["git_dirty"] is True and len(code["git_diff_sha256"]) == 64
    # N commits since no tag, the commit, and a date: uncommitted changes
    assert re.fullmatch(rf"0\.1\.dev\d+\+g{head[:9]}\.d20\d{{6}}", code["package_version"]), code


def test_production_takes_only_a_run_of_committed_code_unless_forced_with_a_reason(dirty_run, toy_run):
    store, commit = dirty_run.parent, read_json(dirty_run / "manifest.json")["code"]["git_commit"]
    with pytest.raises(PromotionRefused,
                       match=rf"made from uncommitted code \(commit {commit[:12]} with changes.*--force --reason"):
        promote(dirty_run.name, "production", store)
    assert not (store / "aliases.json").exists()
    assert promote(dirty_run.name, "staging", store).objections == []  # other aliases take any run
    forced = promote(dirty_run.name, "production", store, force=True, reason="a fix, committed since")
    assert forced.forced and forced.reason == "a fix, committed since" and "uncommitted code" in forced.objections[0]
    assert promotions(store)[-1] == forced
    clean = store / toy_run().name  # the toy's own runs are of its committed checkout
    shutil.copytree(toy_run(), clean)
    r = cli("runs", "--runs-dir", store, "promote", clean.name)
    assert r.returncode == 0, r.stderr
    code = read_json(clean / "manifest.json")["code"]
    assert (code["git_dirty"] is False
            and f"code: commit {code['git_commit'][:12]}, nothing uncommitted" in promotions(store)[-1].checked)


def image(run: Path):
    return cli("image", "build", "--run", run, timeout=120)


def test_the_image_refuses_a_run_of_uncommitted_code(dirty_run):
    r = image(dirty_run)
    assert (r.returncode == 1 and "the image is built from the commit the run was made at, but it was made from "
                                  "uncommitted code" in r.stderr), r.stderr
    assert not (dirty_run / "deployments.jsonl").exists()


def test_the_image_refuses_a_checkout_at_another_commit_than_the_runs(toy, tmp_path):
    other = clone(toy, tmp_path / "project")
    git(other, "commit", "--quiet", "--allow-empty", "-m", "a commit the toy's checkout does not have")
    run = train_in(other, tmp_path / "runs")
    commit = read_json(run / "manifest.json")["code"]["git_commit"]
    r = image(run)  # from the toy's checkout
    assert r.returncode == 1 and f"the run was made at {commit[:12]}: git checkout {commit[:12]}" in r.stderr, r.stderr
    assert not (run / "deployments.jsonl").exists()
