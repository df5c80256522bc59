"""The library as a distribution: its package is its notebooks exported, it imports only what it declares, it finds a
project through the entry point and never imports one, and its version is the one its changelog describes."""
import ast
import filecmp
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

LIB = Path(__file__).resolve().parents[1]
PACKAGE = LIB / "nbprod"
MODULES = sorted(p for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "_modidx"})
BIN = Path(sys.executable).parent


def copy_library(dest: Path) -> Path:
    for name in ["pyproject.toml", "nbs", "nbprod"]:
        (shutil.copytree if (LIB / name).is_dir() else shutil.copy2)(LIB / name, dest / name)
    return dest


def test_the_package_is_its_notebooks_exported(tmp_path):
    lib = copy_library(tmp_path)
    r = subprocess.run([str(BIN / "nbdev-export")], cwd=lib, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cmp = filecmp.dircmp(PACKAGE, lib / "nbprod", ignore=["__pycache__"])
    assert not (cmp.diff_files or cmp.left_only or cmp.right_only), (
        f"lib/nbprod is out of date with lib/nbs (changed: {cmp.diff_files}, removed: {cmp.left_only}, added: "
        f"{cmp.right_only}); run `make export` and commit the result")
    assert len(MODULES) == len(list((LIB / "nbs").glob("*.ipynb"))) >= 20  # one module per notebook


def test_the_notebooks_are_clean(tmp_path):
    "Committed notebooks are as nbdev-clean leaves them (no execution counts, no outputs of a project's data)."
    lib = copy_library(tmp_path)
    r = subprocess.run([str(BIN / "nbdev-clean")], cwd=lib, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    changed = [p.name for p in sorted((lib / "nbs").glob("*.ipynb"))
               if p.read_bytes() != (LIB / "nbs" / p.name).read_bytes()]
    assert not changed, f"run `make clean-nbs` and commit: {changed}"


def lint_imports(lib: Path) -> subprocess.CompletedProcess:
    "import-linter's verdict on the layers of `lib/nbprod` (the contract in `lib/pyproject.toml`, [tool.importlinter])."
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache", str(lib / "pyproject.toml")], cwd=lib,
                          env={**os.environ, "PYTHONPATH": str(lib), "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=120)


def test_each_layer_imports_only_from_below(tmp_path):
    "The layers hold; and the check sees an upward import inside a function, and a module placed in no layer."
    r = lint_imports(LIB)
    assert r.returncode == 0, r.stdout + r.stderr
    lib = copy_library(tmp_path)
    with open(lib / "nbprod" / "files.py", "a") as f:
        f.write("\n\ndef _late():\n    from nbprod.cli import main\n    return main\n")
    (lib / "nbprod" / "newcomer.py").write_text('"A module nobody placed in a layer."\n')
    r = lint_imports(lib)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "nbprod.files -> nbprod.cli" in r.stdout and "- nbprod.newcomer" in r.stdout, r.stdout


def test_the_readme_draws_the_layers():
    "The picture in README.md lists the contract's layers, top to bottom, and every module once."
    import tomllib
    layers = tomllib.loads((LIB / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    picture = (LIB / "README.md").read_text().split("```text\n", 1)[1].split("```", 1)[0]
    drawn = [line.split("  ")[0].strip() for line in picture.splitlines() if line.strip()]
    listed = [" · ".join(m.strip() for m in layer.split("|")) for layer in layers]
    assert drawn == listed, (drawn, listed)
    assert sorted(m for layer in layers for m in layer.replace(" ", "").split("|")) == [p.stem for p in MODULES]


def imported_distributions() -> dict[str, set[str]]:
    "Each third-party top-level module the package imports (inside functions too) -> the distributions that provide it."
    names = set()
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import): names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0: names.add(node.module.split(".")[0])
    provided = metadata.packages_distributions()
    return {n: {d.lower().replace("_", "-") for d in provided.get(n, [])}
            for n in names - set(sys.stdlib_module_names) - {"nbprod"}}


def test_it_imports_only_what_it_declares():
    "A project's lock is built from what the library declares: an import of anything else would fail in some project."
    declared = set()
    for req in map(Requirement, metadata.requires("nbprod") or []):
        declared.add(req.name.lower().replace("_", "-"))
        for extra in req.extras:  # dask[distributed]: what the extra brings is declared too
            declared |= {r.name.lower().replace("_", "-") for r in map(Requirement, metadata.requires(req.name) or [])
                         if r.marker and r.marker.evaluate({"extra": extra})}
    undeclared = {m: d for m, d in imported_distributions().items() if not d & declared}
    assert (not undeclared), ("nbprod imports modules of distributions it does not declare in lib/pyproject.toml: "
                              f"{undeclared}")


def test_it_imports_no_project():
    "Every module of the library imported: the registered project's package is not among the modules loaded."
    project = [ep.value.split(":")[0].split(".")[0] for ep in metadata.entry_points(group="nbprod.project")]
    code = ("import importlib, sys; from pathlib import Path; [importlib.import_module('nbprod.' + m) for m in "
            f"{[p.stem for p in MODULES]!r}]; "
            "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=LIB)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert ("nbprod" in loaded
            and not loaded & set(project)), f"importing nbprod loads the project's package: {loaded & set(project)}"


def test_the_version_is_the_changelogs_newest():
    import nbprod
    assert metadata.version("nbprod") == nbprod.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", nbprod.__version__), "semantic versioning: MAJOR.MINOR.PATCH"
    headings = re.findall(r"^## (\d+\.\d+\.\d+)\b", (LIB / "CHANGELOG.md").read_text(), flags=re.M)
    assert (headings and headings[0] == nbprod.__version__), (f"CHANGELOG.md's newest version is {headings[:1]}, the "
                                                              f"package's {nbprod.__version__}")


HIDE_PROJECTS = '''
import importlib.metadata as _md
_entry_points = _md.entry_points
def entry_points(**params):  # as if no project were installed beside the library (the library asks by group)
    return _md.EntryPoints([]) if params.get("group") == "nbprod.project" else _entry_points(**params)
_md.entry_points = entry_points
'''


def test_the_notebooks_run_with_no_project_installed(tmp_path):
    "The library's notebooks are its tests, and they run on its toy project: no registered project is visible to them."
    (tmp_path / "sitecustomize.py").write_text(HIDE_PROJECTS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    probe = subprocess.run([sys.executable, "-c",
                            "from nbprod.project import registered_project; registered_project()"],
                           capture_output=True, text=True, env=env, cwd=LIB, timeout=60)
    # hidden indeed
    assert probe.returncode != 0 and "exactly one project must be registered" in probe.stderr, probe.stderr
    r = subprocess.run([str(BIN / "nbdev-test"), "--n-workers", "2"], capture_output=True, text=True, env=env, cwd=LIB,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
