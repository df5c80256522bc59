"""Projects generated from the template with `copier copy`, on data sets other than the example's, and a new version of
the library pulled into an edited project with `copier update`: each generated project's own `make train` and `make test`
pass, with the library installed as a new user's machine installs it (from the template's repository at the commit
copier recorded, not from an editable source tree).

Slow (each project builds its own virtual environment from the lock): run by `make test-template`, which .ci/run calls."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
COPIER = Path(sys.executable).parent / "copier"


def run(*cmd, cwd, timeout=1200, env=None):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {}), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@t"})
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed in {cwd}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    "A clone of this repository's committed HEAD, so that a test can commit a template change to it."
    dest = tmp_path_factory.mktemp("template") / "repo"
    run("git", "clone", "--quiet", ROOT, dest, cwd=ROOT)
    return dest


def diabetes_csv(path: Path) -> Path:
    "scikit-learn's diabetes data (shipped with scikit-learn, BSD licence) with other names, a text column and gaps."
    from sklearn.datasets import load_diabetes
    d = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    d.insert(0, "patient", np.arange(101, 101 + len(d)))
    rng = np.random.default_rng(0)
    d["clinic"] = rng.choice(["north", "south", "east"], size=len(d))
    d.loc[rng.choice(len(d), 20, replace=False), "clinic"] = np.nan  # a category with missing values
    d.loc[rng.choice(len(d), 15, replace=False), "bmi"] = np.nan     # a number with missing values
    d.to_csv(path, index=False)
    return path


def penguins_csv(path: Path) -> Path:
    "The Palmer penguins (shipped by the palmerpenguins package; the data are CC0): a label, text columns, missing values."
    from palmerpenguins import load_penguins
    d = load_penguins()
    d.insert(0, "penguin", range(1, len(d) + 1))
    d.to_csv(path, index=False)
    return path


def library_commit(project: Path) -> str:
    "The commit of the template repository that the project's nbprod was installed from (pip's direct_url.json)."
    code = "import json; from importlib.metadata import distribution; print(json.loads(distribution('nbprod').read_text('direct_url.json'))['vcs_info']['commit_id'])"
    return run(project / ".venv/bin/python", "-c", code, cwd=project).stdout.strip()


def generate(template: Path, dest: Path, **answers) -> Path:
    run(COPIER, "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", *[f"--data={k}={v}" for k, v in answers.items()], template, dest, cwd=dest.parent)
    run("git", "init", "--quiet", cwd=dest)
    run("git", "add", "-A", cwd=dest)
    run("git", "commit", "--quiet", "-m", "generated", cwd=dest)
    return dest


@pytest.fixture(scope="module")
def regression_project(template, tmp_path_factory):
    base = tmp_path_factory.mktemp("gen")
    data = diabetes_csv(base / "diabetes.csv")
    return generate(template, base / "disease-progress", project_name="disease-progress", target="progression",
                    id_column="patient", data_file=data)


@pytest.mark.xdist_group(name="regression")
def test_regression_project_trains_and_passes_its_tests(template, regression_project):
    p = regression_project
    assert (p / "data/train.csv").is_file() and (p / "README.md").is_file()
    r = run("make", "train", cwd=p)
    assert "RMSE" in r.stdout and "held-out rows" in r.stdout, r.stdout
    schema = json.loads((p / "disease_progress/schema.json").read_text())
    kinds = {c["name"]: (c["kind"], c["na"]) for c in schema["columns"]}
    assert kinds["patient"] == ("id", "required") and kinds["progression"][0] == "target"
    assert kinds["clinic"] == ("categorical", "unknown") and kinds["bmi"] == ("numeric", "unknown")
    run("make", "test", cwd=p)
    run("make", "lint", cwd=p)  # the generated notebooks, package and tests pass the project's own lint
    # the generated pipeline compiles: batch and one record take the compiled path, with scikit-learn's bits
    check = ("from nbprod.config import get_settings; from nbprod.runs import resolve_run; "
             "from nbprod.predict import Predictor; import pandas as pd; s = get_settings(); "
             "p = Predictor.load(resolve_run('latest', s.runs_dir)); assert p._fast is not None, p.slow_reason; "
             "from disease_progress.data import read_csv; df = read_csv(s.data_file); f = [c.name for c in p.contract.fields]; "
             "assert (p.score(df).predictions == p.pipeline.predict(df[f])).all(); print('compiled')")
    assert run(p / ".venv/bin/python", "-c", check, cwd=p).stdout.strip() == "compiled"
    r = run(p / ".venv/bin/disease-progress", "predict", p / "data/train.csv", "-o", p / "scored.csv", "--no-progress", cwd=p)
    assert "slower" not in r.stderr and pd.read_csv(p / "scored.csv").progression.notna().all()
    # the project holds its own files only, and runs the library pinned to the template's commit
    assert not (p / "disease_progress/core").exists() and not (p / "nbs/core").exists() and not (p / "tools/fix_notebook_conflicts.py").exists()
    own = [f for f in run("git", "ls-files", cwd=p).stdout.split() if not f.startswith(("requirements/", "data/"))]
    assert len(own) <= 30, own
    assert library_commit(p) == run("git", "rev-parse", "HEAD", cwd=template).stdout.strip()


@pytest.mark.xdist_group(name="regression")
def test_copier_update_moves_an_edited_project_to_a_new_library_version(template, regression_project):
    p = regression_project
    nb = p / "nbs/03_pipeline.ipynb"
    cells = json.loads(nb.read_text())
    cells["cells"].append({"cell_type": "markdown", "id": "owner001", "metadata": {}, "source": ["The owner's own note."]})
    nb.write_text(json.dumps(cells, indent=1, sort_keys=True) + "\n")
    run("git", "add", "-A", cwd=p)  # the exported package and the reviewed schema are the owner's to commit
    run("git", "commit", "--quiet", "-m", "the owner edits the pipeline notebook", cwd=p)
    # upstream, a new patch version of the library: a docstring changed in its notebook, exported, the version and pin moved
    lib = template / "lib"
    runs_nb = lib / "nbs/10_runs.ipynb"
    marker = "Finished runs in `runs_dir`, oldest first."
    assert marker in runs_nb.read_text()
    runs_nb.write_text(runs_nb.read_text().replace(marker, "Finished runs in `runs_dir`, oldest first (by their ids).", 1))
    run(Path(sys.executable).parent / "nbdev-export", cwd=lib)
    init = (lib / "nbprod/__init__.py").read_text()
    old = re.search(r'__version__ = "(\d+)\.(\d+)\.(\d+)"', init)
    current, new = ".".join(old.groups()), f"{old[1]}.{old[2]}.{int(old[3]) + 1}"  # the next patch version
    (lib / "nbprod/__init__.py").write_text(init.replace(old[0], f'__version__ = "{new}"'))
    changelog = (lib / "CHANGELOG.md").read_text()
    (lib / "CHANGELOG.md").write_text(changelog.replace("\n## ", f"\n## {new}\n\nRuns: says how they are ordered.\n\n## ", 1))
    pyproject = (template / "pyproject.toml").read_text()
    (template / "pyproject.toml").write_text(pyproject.replace(f'"nbprod=={current}"', f'"nbprod=={new}"'))
    run(sys.executable, template / "tools/template.py", cwd=template)
    run("git", "commit", "--quiet", "-am", f"nbprod {new}: say how runs are ordered", cwd=template)
    run(COPIER, "update", "--trust", "--defaults", "--vcs-ref", "HEAD", cwd=p)
    assert f'"nbprod=={new}"' in (p / "pyproject.toml").read_text()
    assert "The owner's own note." in nb.read_text()  # the project's notebook is the owner's
    assert not [f for f in p.rglob("*") if f.is_file() and ".venv" not in f.parts and "<<<<<<<" in f.read_text(errors="replace")]
    run("make", "test", cwd=p)  # rebuilds the environment with the new library version
    assert library_commit(p) == run("git", "rev-parse", "HEAD", cwd=template).stdout.strip()
    code = "import nbprod, nbprod.runs, inspect; print(nbprod.__version__); print(inspect.getsource(nbprod.runs))"
    out = run(p / ".venv/bin/python", "-c", code, cwd=p).stdout
    assert out.startswith(f"{new}\n") and "oldest first (by their ids)." in out


@pytest.fixture(scope="module")
def classification_project(template, tmp_path_factory):
    base = tmp_path_factory.mktemp("gen")
    data = penguins_csv(base / "penguins.csv")
    return generate(template, base / "penguin-species", project_name="penguin-species", task="classification", target="species",
                    id_column="penguin", data_file=data)


@pytest.mark.xdist_group(name="classification")
def test_classification_project_trains_and_passes_its_tests(classification_project):
    p = classification_project
    r = run("make", "train", cwd=p)
    assert "accuracy" in r.stdout and "log loss" in r.stdout and "ROC AUC" in r.stdout, r.stdout
    schema = json.loads((p / "penguin_species/schema.json").read_text())
    kinds = {c["name"]: (c["kind"], c["na"]) for c in schema["columns"]}
    assert kinds["species"] == ("label", "required") and kinds["sex"] == ("categorical", "unknown")
    assert kinds["island"] == ("categorical", "required") and kinds["bill_length_mm"] == ("numeric", "unknown")
    run("make", "test", cwd=p)
    runs = sorted(d for d in (p / "runs").iterdir() if not d.name.startswith("."))
    preds = pd.read_csv(runs[0] / "predictions.csv")
    assert {"p_Adelie", "p_Chinstrap", "p_Gentoo"} <= set(preds.columns)
    assert np.allclose(preds[["p_Adelie", "p_Chinstrap", "p_Gentoo"]].sum(axis=1), 1.0)
    r = run(p / ".venv/bin/penguin-species", "predict", p / "data/train.csv", "-o", p / "scored.csv", "--no-progress", cwd=p)
    scored = pd.read_csv(p / "scored.csv")
    assert len(scored) == 344 and scored.error.isna().all() and set(scored.species) <= {"Adelie", "Chinstrap", "Gentoo"}
    assert "slower" not in r.stderr, r.stderr
    # a file without a column the model reads: scored as missing in every row, said once with what that becomes
    pd.read_csv(p / "data/train.csv").drop(columns=["sex"]).to_csv(p / "no_sex.csv", index=False)
    r = run(p / ".venv/bin/penguin-species", "predict", p / "no_sex.csv", "-o", p / "no_sex_out.csv", "--no-progress", cwd=p)
    assert "344 × sex: is not in the input: every row reads it as missing, which becomes 'missing', a category of its own" in r.stdout, r.stdout
    refused = subprocess.run([p / ".venv/bin/penguin-species", "predict", p / "no_sex.csv", "-o", p / "never.csv", "--require-all-columns"],
                             cwd=p, capture_output=True, text=True)
    assert refused.returncode == 1 and "lacks 1 of the model's" in refused.stderr and not (p / "never.csv").exists()
    # the classifier compiles too: classes and probabilities from the compiled path, with scikit-learn's bits
    check = ("from nbprod.config import get_settings; from nbprod.runs import resolve_run; "
             "from nbprod.predict import Predictor; import numpy as np; s = get_settings(); "
             "p = Predictor.load(resolve_run('latest', s.runs_dir)); assert p._fast is not None, p.slow_reason; "
             "from penguin_species.data import read_csv; df = read_csv(s.data_file); f = [c.name for c in p.contract.fields]; "
             "out = p.score(df); assert (out.predictions == p.pipeline.predict(df[f])).all(); "
             "assert np.array_equal(out.probabilities, p.pipeline.predict_proba(df[f])); print('compiled')")
    assert run(p / ".venv/bin/python", "-c", check, cwd=p).stdout.strip() == "compiled"
    # the template's search space, cross-validated by the headline metric of a classifier (higher is better)
    run("make", "train", "P=-p search grid -p search_folds 3", cwd=p)
    newest = sorted(d for d in (p / "runs").iterdir() if not d.name.startswith("."))[-1]
    search = json.loads((newest / "manifest.json").read_text())["search"]
    assert len(search["candidates"]) == 9 and search["higher_is_better"] and search["metric"] in json.loads((newest / "metrics.json").read_text())
    assert min(search["candidates"], key=lambda c: c["rank"])["mean"] == max(c["mean"] for c in search["candidates"])
    # the training data against the run's own reference: predictions are labels, compared as categories
    r = run(p / ".venv/bin/penguin-species", "drift", p / "data/train.csv", "--run", newest, "--no-progress", "--all", cwd=p)
    assert "no drift" in r.stdout and "species (prediction)" in r.stdout, r.stdout
