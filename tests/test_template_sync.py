"""The copier template's shared files (locks, the tests of notebooks and fixtures, the image's recipe, pyproject.toml with
the library's pin) are generated from this repository (tools/template.py), as the package is from the notebooks: the
two must not drift apart."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_template_is_in_sync_with_the_repository():
    r = subprocess.run([sys.executable, str(ROOT / "tools/template.py"), "--check"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + "\nRun `make template` and commit the result."


def test_template_names_nothing_of_the_example():
    "Outside the generated files (which only the package and project names are filled into), no house-price word."
    generated = {"tests/test_notebooks.py.jinja", "tests/conftest.py.jinja", "requirements"}
    bad = []
    for p in sorted((ROOT / "template").rglob("*")):
        rel = p.relative_to(ROOT / "template").as_posix()
        if p.is_dir() or any(rel == g or rel.startswith(g + "/") for g in generated): continue
        text = p.read_text(encoding="utf-8").lower()
        bad += [f"{rel}: {w}" for w in (r"\bhouses?\b", r"\bprices?\b", r"\bames\b", "saleprice") if re.search(w, text)]
    assert not bad, bad


def test_the_template_holds_no_machinery():
    "A generated project pins the library: no machinery notebook, no copy of the package, no word list in the scaffold."
    files = [p.relative_to(ROOT / "template").as_posix() for p in (ROOT / "template").rglob("*") if p.is_file()]
    assert not [f for f in files if "/core/" in f or f.startswith("nbs/core") or "machinery" in f], files
    assert 'nbprod==' in (ROOT / "template/pyproject.toml.jinja").read_text()
