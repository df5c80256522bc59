"""The notebooks are the source: the package matches them, and cleaning them keeps what papermill needs."""
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

from nbprod.job import job_parameters

BIN = Path(sys.executable).parent


def copy_project(settings, dest):
    for name in ["pyproject.toml", "nbs", "house_prices"]:
        src = settings.root / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    return dest


def test_nbdev_export_leaves_the_package_unchanged(settings, tmp_path):
    proj = copy_project(settings, tmp_path)
    r = subprocess.run([str(BIN / "nbdev-export")], cwd=proj, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cmp = filecmp.dircmp(settings.root / "house_prices", proj / "house_prices", ignore=["__pycache__"])
    assert not (cmp.diff_files or cmp.left_only or cmp.right_only), (
        f"house_prices/ is out of date with nbs/ (changed: {cmp.diff_files}, removed: {cmp.left_only}, added: {cmp.right_only}); "
        "run `make export` and commit the result")


def test_job_notebook_keeps_its_parameters_tag_after_nbdev_clean(settings, tmp_path):
    proj = copy_project(settings, tmp_path)
    nb = proj / "nbs" / "jobs" / "train.ipynb"
    r = subprocess.run([str(BIN / "nbdev-clean"), "--fname", str(nb)], cwd=proj, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert job_parameters(nb) == job_parameters(settings.job_notebook)


def test_notebooks_are_clean(settings, tmp_path):
    "Committed notebooks are as nbdev-clean leaves them (no execution counts or stray metadata)."
    proj = copy_project(settings, tmp_path)
    r = subprocess.run([str(BIN / "nbdev-clean")], cwd=proj, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    changed = [str(p.relative_to(proj)) for p in sorted((proj / "nbs").rglob("*.ipynb"))
               if p.read_bytes() != (settings.root / p.relative_to(proj)).read_bytes()]
    assert not changed, f"run `make clean-nbs` and commit: {changed}"
