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


def test_a_file_without_the_garage_and_pool_columns_says_so_once_and_is_refused_when_told(run, settings, tmp_path):
    """Five rows of test.csv without six columns declared `absent`: scored (every row reads them as "none"), but said
    once, with what each becomes; refused with --require-all-columns. Their prices move, so silence would be a bias."""
    lacking = ["GarageType", "GarageFinish", "GarageQual", "GarageCond", "FireplaceQu", "PoolQC"]
    rows = pd.read_csv(settings.scoring_file, dtype=str, keep_default_na=False).head(5)
    rows.drop(columns=lacking).to_csv(tmp_path / "lacking.csv", index=False)
    r = house_prices_cli("predict", "--run", run, "--no-progress", tmp_path / "lacking.csv", "-o", tmp_path / "out.csv")
    assert r.returncode == 0, r.stderr
    assert "5 rows: 5 scored, 0 refused, 5 scored with warnings" in r.stdout
    assert "columns the model reads that the input lacks (6):" in r.stdout
    assert ("GarageType: is not in the input: every row reads it as missing, which for this column means absent "
            "(NA: no garage); it becomes 'None', a category of its own") in r.stdout, r.stdout
    r = house_prices_cli("predict", "--run", run, "--no-progress", "--require-all-columns", tmp_path / "lacking.csv",
                         "-o", tmp_path / "never.csv")
    assert r.returncode == 1 and "lacks 6 of the model's" in r.stderr and not (tmp_path / "never.csv").exists()
