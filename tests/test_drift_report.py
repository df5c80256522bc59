"""Drift on the example's own data: its run's report shows the reference profile, and test.csv, of the same population
as train.csv, flags nothing. What `drift` does for any project (shifted data, thresholds, input logs, metrics) is
tested once, in the library's tests."""
import json

import pytest
from nbprod.drift import read_profile

from conftest import house_prices_cli


@pytest.fixture(scope="module")
def run(train_job):
    return train_job()


def test_the_report_shows_the_reference_profile(run):
    assert "Reference profile" in (run / "report.html").read_text()
    lot = {c.name: c for c in read_profile(run).columns}["LotFrontage"]
    assert 0.1 < lot.missing_rate < 0.25


def test_test_csv_against_the_training_rows_flags_nothing(run, settings, tmp_path):
    """test.csv comes from the same population as train.csv: nothing is flagged. Where a measure alone would mislead, the rule does not:
    PoolQC has 3 present values of 1459 in test.csv and 7 of 1314 in training, its PSI is large (> 1) on so few values, and its test is not
    significant: not flagged. The largest missing-rate changes (FireplaceQu 47% -> 50%) stay below 10 points."""
    r = house_prices_cli("drift", "--no-progress", "--run", run, settings.scoring_file, "--all", "--json", tmp_path / "d.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no drift: none of 79 columns nor the prediction is flagged" in r.stdout
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["rows"] == 1459 and not [c for c in report["columns"] if c["reasons"]] and not report["prediction"]["reasons"]
    pool = next(c for c in report["columns"] if c["name"] == "PoolQC")
    assert pool["psi"] > 1 and pool["test"] is None
    assert max(abs(c["missing_current"] - c["missing_reference"]) for c in report["columns"]) < 0.05
