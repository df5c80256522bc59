"""`house-prices predict`: the batch CLI on real files."""
import pandas as pd
import pytest

from house_prices.data import read_raw_csv

from conftest import house_prices_cli


@pytest.fixture(scope="module")
def run(train_job):
    return train_job()


def test_scores_all_of_test_csv(run, settings, tmp_path):
    r = house_prices_cli("predict", "--run", run, "--no-progress", settings.test_csv, "-o", tmp_path / "out.csv",
                         "--issues-file", tmp_path / "issues.csv")
    assert r.returncode == 0, r.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["Id", "SalePrice", "error"]
    assert len(out) == 1459 and out.SalePrice.notna().all() and out.error.isna().all()
    assert out.Id.tolist() == pd.read_csv(settings.test_csv).Id.tolist()
    assert "1459 rows: 1459 scored, 0 refused" in r.stdout
    issues = pd.read_csv(tmp_path / "issues.csv")
    assert set(issues.level) == {"warning"} and issues.Id.isin(out.Id).all()


def test_parquet_in_and_out_same_prices(run, settings, tmp_path):
    raw = read_raw_csv(settings.test_csv)
    raw.to_parquet(tmp_path / "test.parquet")
    r1 = house_prices_cli("predict", "--run", run, "--no-progress", "--chunk-size", "300", tmp_path / "test.parquet", "-o", tmp_path / "out.parquet")
    r2 = house_prices_cli("predict", "--run", run, "--no-progress", settings.test_csv, "-o", tmp_path / "out.csv")
    assert r1.returncode == r2.returncode == 0, r1.stderr + r2.stderr
    a, b = pd.read_parquet(tmp_path / "out.parquet"), pd.read_csv(tmp_path / "out.csv")
    assert (a.SalePrice.to_numpy() == b.SalePrice.to_numpy()).all() and a.Id.tolist() == b.Id.tolist()


def test_refused_rows_are_kept_with_their_reason_and_fail_the_command(run, settings, tmp_path):
    raw = pd.read_csv(settings.test_csv, dtype=str, keep_default_na=False).head(20)
    raw.loc[3, "LotArea"] = "lots"
    raw.loc[7, "Neighborhood"] = "NA"
    raw.to_csv(tmp_path / "bad.csv", index=False)
    r = house_prices_cli("predict", "--run", run, "--no-progress", tmp_path / "bad.csv", "-o", tmp_path / "out.csv")
    assert r.returncode == 1
    assert "2 row(s) refused" in r.stderr and "LotArea: expected a number" in r.stdout
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 20 and out.SalePrice.isna().tolist() == [i in (3, 7) for i in range(20)]
    assert out.error[3] == "LotArea: expected a number (got 'lots')"
    assert out.error[7] == "Neighborhood: is missing, but this column must have a value"
    r = house_prices_cli("predict", "--run", run, "--no-progress", "--allow-errors", tmp_path / "bad.csv", "-o", tmp_path / "out2.csv")
    assert r.returncode == 0


def test_unreadable_input_leaves_no_output(run, tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    r = house_prices_cli("predict", "--run", run, "--no-progress", tmp_path / "broken.parquet", "-o", tmp_path / "out.csv")
    assert r.returncode == 1 and "cannot score" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.parquet"]


def test_run_defaults_to_the_newest_complete_run(run, tmp_path, settings):
    env = {"HOUSE_PRICES_ROOT": str(tmp_path)}
    r = house_prices_cli("predict", "--no-progress", settings.test_csv, "-o", tmp_path / "out.csv", env=env)
    assert r.returncode == 1 and "no finished run" in r.stderr and "train one first" in r.stderr
    import shutil
    shutil.copytree(run, tmp_path / "runs" / run.name)
    (tmp_path / "runs" / ".staging" / "29990101T000000Z-000000").mkdir(parents=True)  # newer, but not finished
    r = house_prices_cli("predict", "--no-progress", settings.test_csv, "-o", tmp_path / "out.csv", env=env)
    assert r.returncode == 0 and f"run {run.name} ->" in r.stdout
