"""`<project> predict`, the batch command, on real files: every row answered (a prediction or its own error), one
output schema whatever chunk a refusal falls in, nothing left behind when it fails or is stopped."""
import resource
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from nbprod.agreement import DIFFERENT, agree
from nbprod.toy import toy_rows

from toys import cli, cli_process, unseen_csv


@pytest.fixture(scope="module")
def run(toy_run):
    return toy_run()


@pytest.fixture(scope="module")
def new_rows(tmp_path_factory):
    "Rows to score: ids after the training rows', no target, the toy's gaps (unknown ages, unpainted colours)."
    return unseen_csv(tmp_path_factory.mktemp("batch"), 300, seed=1, start=1001)


def text_rows(path, n):
    "The first `n` rows of a CSV as the text it holds."
    return pd.read_csv(path, dtype=str, keep_default_na=False).head(n)


def test_scores_every_row(run, new_rows, tmp_path):
    r = cli("predict", "--run", run, "--no-progress", new_rows, "-o", tmp_path / "out.csv", "--issues-file",
            tmp_path / "issues.csv")
    assert r.returncode == 0, r.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["key", "predicted", "error"]
    assert len(out) == 300 and out.predicted.notna().all() and out.error.isna().all()
    assert out.key.tolist() == pd.read_csv(new_rows).key.tolist()
    assert "300 rows: 300 scored, 0 refused" in r.stdout
    issues = pd.read_csv(tmp_path / "issues.csv")  # the unknown ages: warnings, each naming its row
    assert set(issues.level) == {"warning"} and set(issues.column) == {"age"} and issues.key.isin(out.key).all()


def test_parquet_in_and_out_gives_the_same_predictions(run, new_rows, tmp_path):
    pd.read_csv(new_rows, dtype={"colour": object, "grade": object}).to_parquet(tmp_path / "new.parquet")
    r1 = cli("predict", "--run", run, "--no-progress", "--chunk-size", "70", tmp_path / "new.parquet", "-o",
             tmp_path / "out.parquet")
    r2 = cli("predict", "--run", run, "--no-progress", new_rows, "-o", tmp_path / "out.csv")
    assert r1.returncode == r2.returncode == 0, r1.stderr + r2.stderr
    a, b = pd.read_parquet(tmp_path / "out.parquet"), pd.read_csv(tmp_path / "out.csv")
    assert a.key.tolist() == b.key.tolist()
    # other chunks: BLAS may sum in another order
    assert agree(a.predicted.to_numpy(), b.predicted.to_numpy()).tier != DIFFERENT


def test_refused_rows_are_kept_with_their_reason_and_fail_the_command(run, new_rows, tmp_path):
    raw = text_rows(new_rows, 20)
    raw.loc[3, "area"] = "lots"
    raw.loc[7, "grade"] = "NA"
    raw.to_csv(tmp_path / "bad.csv", index=False)
    r = cli("predict", "--run", run, "--no-progress", tmp_path / "bad.csv", "-o", tmp_path / "out.csv")
    assert r.returncode == 1
    assert "2 row(s) refused" in r.stderr and "area: expected a number" in r.stdout
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 20 and out.predicted.isna().tolist() == [i in (3, 7) for i in range(20)]
    assert out.error[3] == "area: expected a number (got 'lots')"
    assert out.error[7] == "grade: is missing, but this column must have a value"
    r = cli("predict", "--run", run, "--no-progress", "--allow-errors", tmp_path / "bad.csv", "-o",
            tmp_path / "out2.csv")
    assert r.returncode == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("bad_rows", [[], [1], [17], [1, 17]], ids=["none", "first chunk", "later chunk", "both"])
def test_errors_in_any_chunk_keep_every_row_and_one_output_schema(run, new_rows, tmp_path, suffix, bad_rows):
    raw = text_rows(new_rows, 20)
    for i in bad_rows: raw.loc[i, "area"] = "lots"
    raw.to_csv(tmp_path / "in.csv", index=False)
    r = cli("predict", "--run", run, "--no-progress", "--allow-errors", "--chunk-size", "5", tmp_path / "in.csv", "-o",
            tmp_path / f"out{suffix}")
    assert r.returncode == 0, r.stderr
    out = pd.read_parquet(tmp_path / "out.parquet") if suffix == ".parquet" else pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["key", "predicted", "error"] and len(out) == 20
    assert out.predicted.isna().tolist() == [i in bad_rows for i in range(20)]
    assert out.error.notna().tolist() == [i in bad_rows for i in range(20)]
    assert out.key.tolist() == raw.key.astype(int).tolist() and out.predicted.dtype == "float64"


def test_unreadable_input_leaves_no_output(run, tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    r = cli("predict", "--run", run, "--no-progress", tmp_path / "broken.parquet", "-o", tmp_path / "out.csv")
    assert r.returncode == 1 and "cannot score" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.parquet"]


def test_a_file_of_another_shape_is_refused_as_a_whole(run, tmp_path):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n3,4\n")
    r = cli("predict", "--run", run, "--no-progress", "--allow-errors", tmp_path / "other.csv", "-o",
            tmp_path / "out.csv")
    assert (r.returncode == 1 and "has none of the model's 4 columns" in r.stderr
            and "is this the right file?" in r.stderr)
    assert r.stderr.count("\n") <= 2 and not (tmp_path / "out.csv").exists()


def test_run_defaults_to_the_newest_complete_run(run, new_rows, tmp_path, toy):
    from nbprod.project import get_project
    env = {get_project().root_env_var: str(tmp_path)}
    r = cli("predict", "--no-progress", new_rows, "-o", tmp_path / "out.csv", env=env)
    assert r.returncode == 1 and "no finished run" in r.stderr and "train one first" in r.stderr
    shutil.copytree(run, tmp_path / "runs" / run.name)
    (tmp_path / "runs" / ".staging" / "29990101T000000Z-000000").mkdir(parents=True)  # newer, but not finished
    r = cli("predict", "--no-progress", new_rows, "-o", tmp_path / "out.csv", env=env)
    assert r.returncode == 0 and f"run {run.name} ->" in r.stdout
    assert "no run is promoted to 'production'" in r.stderr  # the newest, and a warning that nothing is promoted


def test_sigterm_leaves_no_temporary_output(run, tmp_path):
    toy_rows(300_000, seed=2, target=False).to_csv(tmp_path / "big.csv", index=False)
    proc = cli_process("predict", "--run", run, "--no-progress", "--chunk-size", "100", tmp_path / "big.csv", "-o",
                       tmp_path / "out.csv",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    # its temporary output
    while not list(tmp_path.glob(".out.csv.*.tmp")) and time.time() < deadline and proc.poll() is None: time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]  # no output, no temporary file


def test_a_write_failure_ends_in_one_line_and_leaves_no_output(run, tmp_path):
    toy_rows(3000, seed=3, target=False).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "out").mkdir()
    # as on a full disk: writes fail with EFBIG
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    r = subprocess.run([sys.executable, "-m", "nbprod.cli", "predict", "--run", str(run), "--no-progress",
                        "--chunk-size", "200",
                        str(tmp_path / "in.csv"), "-o", str(tmp_path / "out" / "out.csv")], capture_output=True,
                        text=True, timeout=300,
                       preexec_fn=limit)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "File too large" in r.stderr and "out.csv" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
