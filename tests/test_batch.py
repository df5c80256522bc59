"""`house-prices predict` answers every row of the example's test.csv. (The batch command itself, its chunks, refusals and
failures, is the library's test: lib/tests/test_batch_files.py.)"""
import pandas as pd
import pytest

from conftest import house_prices_cli


@pytest.fixture(scope="module")
def run(train_job):
    return train_job()


def test_scores_all_of_test_csv(run, settings, tmp_path):
    r = house_prices_cli("predict", "--run", run, "--no-progress", settings.scoring_file, "-o", tmp_path / "out.csv",
                         "--issues-file", tmp_path / "issues.csv")
    assert r.returncode == 0, r.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["Id", "SalePrice", "error"]
    assert len(out) == 1459 and out.SalePrice.notna().all() and out.error.isna().all()
    assert out.Id.tolist() == pd.read_csv(settings.scoring_file).Id.tolist()
    assert "1459 rows: 1459 scored, 0 refused" in r.stdout
    issues = pd.read_csv(tmp_path / "issues.csv")
    assert set(issues.level) == {"warning"} and issues.Id.isin(out.Id).all()
