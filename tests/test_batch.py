"""`house-prices predict`: the batch CLI on real files."""
import signal
import subprocess
import time

import pandas as pd
import pytest
from conftest import BIN, house_prices_cli

from house_prices.data import read_raw_csv


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
    assert "no run is promoted to 'production'" in r.stderr  # the newest, and a warning that nothing is promoted


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("bad_rows", [[], [1], [17], [1, 17]], ids=["none", "first chunk", "later chunk", "both"])
def test_errors_in_any_chunk_keep_every_row_and_one_output_schema(run, settings, tmp_path, suffix, bad_rows):
    raw = pd.read_csv(settings.test_csv, dtype=str, keep_default_na=False).head(20)
    for i in bad_rows: raw.loc[i, "LotArea"] = "lots"
    raw.to_csv(tmp_path / "in.csv", index=False)
    r = house_prices_cli("predict", "--run", run, "--no-progress", "--allow-errors", "--chunk-size", "5", tmp_path / "in.csv", "-o", tmp_path / f"out{suffix}")
    assert r.returncode == 0, r.stderr
    out = pd.read_parquet(tmp_path / "out.parquet") if suffix == ".parquet" else pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["Id", "SalePrice", "error"] and len(out) == 20
    assert out.SalePrice.isna().tolist() == [i in bad_rows for i in range(20)]
    assert out.error.notna().tolist() == [i in bad_rows for i in range(20)]
    assert out.Id.tolist() == raw.Id.astype(int).tolist() and out.SalePrice.dtype == "float64"


def test_a_file_of_another_shape_is_refused_as_a_whole(run, tmp_path):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n3,4\n")
    r = house_prices_cli("predict", "--run", run, "--no-progress", "--allow-errors", tmp_path / "other.csv", "-o", tmp_path / "out.csv")
    assert r.returncode == 1 and "has none of the model's 79 columns" in r.stderr and "is this the right file?" in r.stderr
    assert r.stderr.count("\n") <= 2 and not (tmp_path / "out.csv").exists()


def test_sigterm_leaves_no_temporary_output(run, settings, tmp_path):
    big = pd.concat([pd.read_csv(settings.test_csv, dtype=str, keep_default_na=False)] * 40, ignore_index=True)
    big["Id"] = range(1, len(big) + 1)
    big.to_csv(tmp_path / "big.csv", index=False)
    proc = subprocess.Popen([str(BIN / "house-prices"), "predict", "--run", str(run), "--no-progress", "--chunk-size", "500",
                             str(tmp_path / "big.csv"), "-o", str(tmp_path / "out.csv")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".out.csv.*.tmp")) and time.time() < deadline and proc.poll() is None: time.sleep(0.05)  # its temporary output
    assert proc.poll() is None, "the batch finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]  # no output, no temporary file


def test_a_write_failure_ends_in_one_line_and_leaves_no_output(run, settings, tmp_path):
    import resource
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # as on a full disk: writes fail with EFBIG
    r = subprocess.run([str(BIN / "house-prices"), "predict", "--run", str(run), "--no-progress", "--chunk-size", "200", str(settings.test_csv),
                        "-o", str(tmp_path / "out.csv")], capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "File too large" in r.stderr and "out.csv" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
