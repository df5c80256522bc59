"""Scoring on Dask with a real local cluster of two worker processes on loopback, of a toy run: parity with the
single-process scorer on a CSV cut into blocks and on a multi-file Parquet dataset, partitions with and without errors,
a worker killed mid-job, a worker set up unlike the training kernel, an input without rows, and the command line.
Parity is the same rows, keys and errors exactly and predictions within RTOL: the toy's ridge sums through BLAS, whose
order may follow a partition's row count."""
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbprod.agreement import DIFFERENT, agree
from nbprod.batch import score_file
from nbprod.cluster import WORKER_ENV, ModelPlugin, dask_client, input_files, output_schema, score_dataset
from nbprod.contract import not_in_input
from nbprod.predict import Predictor
from nbprod.schema import read_raw_csv
from nbprod.toy import toy_rows

from toys import cli

ROWS = 12_000


@pytest.fixture(scope="module")
def run(toy_run):
    return toy_run()


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12,000 new toy rows as one CSV and as three Parquet files of text with row groups of 1,000; errors in the second
    file only."""
    d = tmp_path_factory.mktemp("data")
    toy_rows(ROWS, seed=9, target=False).to_csv(d / "all.csv", index=False)
    big = read_raw_csv(d / "all.csv")
    cuts = np.linspace(0, len(big), 4).astype(int)
    parts = [big.iloc[a:b].copy() for a, b in zip(cuts, cuts[1:])]
    parts[1].loc[parts[1].index[::97], "area"] = "huge"  # refused rows, in one file
    (d / "pq").mkdir()
    for i, p in enumerate(parts):
        pq.write_table(pa.Table.from_pandas(p, preserve_index=False), d / "pq" / f"part-{i}.parquet",
                       row_group_size=1000)
    (d / "pq" / "_SUCCESS").write_text("")  # files starting with _ or . are not data (Spark, Hadoop, Dask write such)
    return d


def same(got, want):
    "The same output: rows, keys, errors and column types exactly, predictions within RTOL."
    assert got.columns.tolist() == want.columns.tolist() and got.dtypes.equals(want.dtypes)
    assert got.drop(columns="predicted").equals(want.drop(columns="predicted"))
    assert np.array_equal(got.predicted.isna(), want.predicted.isna())
    assert agree(got.predicted.dropna().to_numpy(), want.predicted.dropna().to_numpy()).tier != DIFFERENT
    return True

def single(run, path, out, issues=False):
    """The single-process scorer's output for `path`, concatenated over files (and its issues, rows counted on across
    files)."""
    p = Predictor.load(run)
    frames, side = [], []
    for i, f in enumerate(input_files(path)):
        score_file(p, f, out / f"one-{i}.parquet", issues_file=out / f"one-{i}.issues.csv")
        frames.append(pd.read_parquet(out / f"one-{i}.parquet"))
        side.append(pd.read_csv(out / f"one-{i}.issues.csv").assign(row=lambda t: t.row
                                                                    + sum(len(x) for x in frames[:-1])))
    return (pd.concat(frames, ignore_index=True), pd.concat(side, ignore_index=True)) if issues else pd.concat(frames,
        ignore_index=True)


def test_a_csv_in_blocks_scores_as_in_one_process(run, client, data, tmp_path):
    summary = score_dataset(client, run, input_files(data / "all.csv"), tmp_path / "out", csv_partition_bytes=2**15)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    # one per block, zero-padded: they sort
    assert len(files) >= 5 and files == [f"part-{i:06d}.parquet" for i in range(len(files))]
    got = pd.read_parquet(tmp_path / "out")
    assert same(got, single(run, data / "all.csv", tmp_path))
    assert summary.rows == len(got) == ROWS and summary.failed == 0 and got.key.is_monotonic_increasing


def test_a_parquet_dataset_with_errors_in_one_file_scores_as_in_one_process(run, client, data, tmp_path):
    summary = score_dataset(client, run, input_files(data / "pq"), tmp_path / "out", partition_rows=2000)
    got, want = pd.read_parquet(tmp_path / "out"), single(run, data / "pq", tmp_path)
    assert same(got, want) and got.key.tolist() == list(range(1, ROWS + 1))
    assert summary.failed == got.error.notna().sum() > 0 and got.error.dropna().str.startswith("area:").all()
    schemas = {str(pq.read_schema(p).remove_metadata()) for p in (tmp_path / "out").glob("part-*.parquet")}
    assert len(schemas) == 1  # partitions without an error have the same column types as those with
    # 4,000 rows per file, row groups of 1,000, at most 2,000 rows a partition
    assert len(list((tmp_path / "out").iterdir())) == 2 + 2 + 2


def test_a_worker_killed_mid_job_loses_nothing(run, client, data, tmp_path):
    """Dask re-runs the dead worker's partitions on a restarted worker: the output is complete and the same, or the job
    fails and writes nothing."""
    pids, killed = list(client.run(os.getpid).values()), []
    def kill_after_the_first_partition():
        deadline = time.time() + 120
        while not list(tmp_path.glob(".out.tmp-*/part-*.parquet")) and time.time() < deadline: time.sleep(0.01)
        os.kill(pids[0], signal.SIGKILL); killed.append(time.time())
    killer = threading.Thread(target=kill_after_the_first_partition)
    killer.start()
    try:
        score_dataset(client, run, input_files(data / "all.csv"), tmp_path / "out", csv_partition_bytes=2**14)
        assert killed, "the job ended before the worker was killed: nothing was tested"
    except Exception as e:  # allowed: a clear failure, and no output folder
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*")), e
        pytest.skip(f"the job failed cleanly after the kill: {e}")
    finally:
        killer.join()
    assert same(pd.read_parquet(tmp_path / "out"), single(run, data / "all.csv", tmp_path))
    client.wait_for_workers(2, timeout=60)


def test_a_worker_unlike_the_kernel_is_refused_before_any_work(run, client, data, tmp_path):
    with pytest.raises(RuntimeError, match="not set up like the training kernel: OMP_NUM_THREADS='1', not '4'"):
        client.register_plugin(ModelPlugin(str(run), env={**WORKER_ENV, "OMP_NUM_THREADS": "4"}))
    env = client.run(lambda: (os.environ.get("PYTHONHASHSEED"), os.environ.get("OPENBLAS_NUM_THREADS")))
    assert set(env.values()) == {("0", "1")}  # the local cluster's workers: as the kernel


def test_the_command_line(run, data, tmp_path):
    r = cli("predict", "--engine", "dask", "--workers", "2", "--run", run, data / "pq", "-o", tmp_path / "out",
            "--no-progress",
                         "--partition-rows", "2000", "--issues-file", tmp_path / "issues.csv")
    assert r.returncode == 1 and "row(s) refused" in r.stderr, r.stderr  # refused rows: exit 1, as without Dask
    assert "dashboard http://127.0.0.1:" in r.stderr and "worker(s)" in r.stderr
    want, want_issues = single(run, data / "pq", tmp_path, issues=True)
    assert same(pd.read_parquet(tmp_path / "out"), want)
    # every error and warning of 6 partitions, rows counted on across partitions and files
    issues = pd.read_csv(tmp_path / "issues.csv")
    # a file whose issues have no value reads that column as numbers
    pd.testing.assert_frame_equal(issues, want_issues, check_dtype=False)
    assert (issues.level == "error").sum() == want.error.notna().sum() > 0
    assert ((want.key.to_numpy()[issues.row] == issues.key).all()
            and sorted(p.name for p in (tmp_path / "out").iterdir())[0] == "part-000000.parquet")
    again = cli("predict", "--engine", "dask", "--run", run, data / "pq", "-o", tmp_path / "out")
    assert again.returncode == 1 and "exists already" in again.stderr
    r = cli("predict", "--run", run, data / "pq", "-o", tmp_path / "x.parquet")
    assert r.returncode == 2 and "a folder or a glob needs --engine dask" in r.stderr
    r = cli("predict", "--engine", "dask", "--run", run, data / "pq", "-o", tmp_path / "y", "--log-inputs",
            tmp_path / "log")
    assert r.returncode == 2 and "--log-inputs cannot be used with --engine dask" in r.stderr


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_an_input_without_rows_gives_one_empty_partition_of_the_same_types(run, client, data, tmp_path, kind):
    empty = pd.read_csv(data / "all.csv", nrows=0, dtype=str)
    path = tmp_path / f"empty.{kind}"
    empty.to_csv(path, index=False) if kind == "csv" else empty.to_parquet(path, index=False)
    summary = score_dataset(client, run, input_files(path), tmp_path / "out", issues_file=tmp_path / "issues.csv")
    parts = list((tmp_path / "out").iterdir())
    assert summary.rows == 0 and [p.name
                                  for p in parts] == ["part-000000.parquet"] and len(pd.read_parquet(parts[0])) == 0
    # the contract's types, as a partition with rows
    assert pq.read_schema(parts[0]).remove_metadata().equals(output_schema(Predictor.load(run).contract))
    assert pd.read_csv(tmp_path / "issues.csv").columns.tolist() == ["row", "key", "column", "value", "message",
                                                                     "level"]


def test_csv_files_with_their_columns_in_other_orders_are_each_read_by_their_own_header(run, client, data, tmp_path):
    whole = pd.read_csv(data / "all.csv", dtype=str, keep_default_na=False)
    (tmp_path / "in").mkdir()
    whole.iloc[:5000].to_csv(tmp_path / "in" / "a.csv", index=False)
    whole.iloc[5000:].iloc[:, ::-1].to_csv(tmp_path / "in" / "b.csv", index=False)  # the same columns, reversed
    score_dataset(client, run, input_files(tmp_path / "in"), tmp_path / "out", csv_partition_bytes=2**16)
    assert same(pd.read_parquet(tmp_path / "out"), single(run, data / "all.csv", tmp_path))


def test_a_file_without_a_column_is_said_once_and_refused_when_every_column_is_required(run, client, data, tmp_path):
    whole = pd.read_csv(data / "all.csv", dtype=str, keep_default_na=False)
    (tmp_path / "in").mkdir()
    whole.iloc[:5000].to_csv(tmp_path / "in" / "a.csv", index=False)
    whole.iloc[5000:].drop(columns=["age"]).to_csv(tmp_path / "in" / "b.csv", index=False)
    files = input_files(tmp_path / "in")
    with pytest.raises(ValueError, match="b.csv lacks 1 of the model's 4 columns: age"):  # before any partition
        score_dataset(client, run, files, tmp_path / "never", require_all_columns=True)
    assert not (tmp_path / "never").exists() and not list(tmp_path.glob(".never*"))
    summary = score_dataset(client, run, files, tmp_path / "out", csv_partition_bytes=2**16,
                            issues_file=tmp_path / "issues.csv")
    age = next(f for f in Predictor.load(run).contract.fields if f.name == "age")
    read_as = f"age: {not_in_input(age)[1]}"  # what the run's fitted pipeline makes of it: its median
    assert dict(summary.missing_columns) == {read_as: ROWS - 5000}  # b's rows only, over all of its partitions
    issues = pd.read_csv(tmp_path / "issues.csv")
    assert issues[issues.row.isna()][["column", "value", "level"]].values.tolist() == [["age", "b.csv", "warning"]]
    assert issues[(issues.row >= 5000) & (issues.column == "age")].empty  # said once, not per row
    # b's rows as the single-process scorer scores that file
    one = score_file(Predictor.load(run), tmp_path / "in" / "b.csv", tmp_path / "b.parquet")
    assert dict(one.missing_columns) == {read_as: ROWS - 5000}
    b = pd.read_parquet(tmp_path / "out").iloc[5000:].reset_index(drop=True)
    assert same(b, pd.read_parquet(tmp_path / "b.parquet"))
