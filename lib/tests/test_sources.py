"""Training data of a toy project from files, SQLite and a real PostgreSQL server: one fingerprint, as_of, snapshots,
validation, no password written. Trained by the toy's real job and reproduced by the real command."""
import json
import secrets
import shutil
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest

from nbprod.runs import list_runs, read_json
from nbprod.schema import fingerprint
from nbprod.sources import ingest, load
from nbprod.toy import toy_schema

from pgserver import server_binaries, temporary_postgres
from toys import cli

DATA = "data/toy.csv"  # the toy's training rows, in its root
REPRODUCED = "verdict: reproduced"  # bit-identical or numerically equivalent: the toy's ridge fits through BLAS


@pytest.fixture(scope="session")
def postgres():
    "A real PostgreSQL server on loopback, in a temporary directory, for this test session."
    if server_binaries() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql "
                    "(.ci/run does)")
    with temporary_postgres() as url:
        yield url


def fp(df):
    return fingerprint(df, toy_schema())


def shuffled_table(root, url, table):
    load(DATA, root).sample(frac=1, random_state=7).to_sql(table, url, index=False, if_exists="replace")


def test_same_fingerprint_from_csv_parquet_sqlite_postgres_and_shuffled_tables(toy, postgres, tmp_path):
    csv_fp = fp(load(DATA, toy))
    pd.read_csv(toy / DATA, dtype=str,
                keep_default_na=False).sample(frac=1, random_state=1).to_csv(tmp_path / "shuffled.csv", index=False)
    load(DATA, toy).to_parquet(tmp_path / "toy.parquet")
    sqlite = f"sqlite:///{tmp_path}/t.db"
    shuffled_table(toy, sqlite, "rows")
    shuffled_table(toy, postgres, "rows_shuffled")
    ingest(DATA, postgres, "rows_ingested", batches=4, root=toy)
    refs = [tmp_path / "shuffled.csv", tmp_path / "toy.parquet", f"{sqlite}?table=rows",
            f"{postgres}?table=rows_shuffled", f"{postgres}?table=rows_ingested",
            f"{postgres}?query=SELECT * FROM rows_shuffled"]
    assert {str(r): fp(load(str(r), toy)) for r in refs} == {str(r): csv_fp for r in refs}
    r = cli("data", "fingerprint", f"{postgres}?table=rows_shuffled")
    assert r.returncode == 0 and r.stdout.startswith(csv_fp)


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_as_of_is_unchanged_by_later_appends_and_updates(toy, tmp_path, db, request):
    url = f"sqlite:///{tmp_path}/t.db" if db == "sqlite" else request.getfixturevalue("postgres")
    table = f"stream_{db}"
    stamps = ingest(DATA, url, table, batches=3, start="2026-03-01T00:00:00", root=toy)
    ref = f"{url}?table={table}"
    before = load(ref, as_of="2026-03-02T12:00:00")  # the first two of three batches
    batches = np.array_split(np.arange(200), 3)  # ingest's batches: 67, 67 and 66 rows, a day apart
    assert [str(t) for t in stamps] == ["2026-03-01 00:00:00", "2026-03-02 00:00:00", "2026-03-03 00:00:00"]
    assert before.key.tolist() == [k + 1 for k in np.concatenate(batches[:2])]
    changed = load(DATA, toy).head(100).assign(y=1.0)  # updated targets, later
    changed.assign(ingested_at=pd.Timestamp("2026-03-05")).to_sql(table, url, index=False, if_exists="append")
    after = load(ref, as_of="2026-03-02T12:00:00")
    assert fp(after) == fp(before)
    latest = load(ref)
    assert len(latest) == 200 and (latest.head(100).y == 1.0).all()  # the newest version of each row


def test_training_from_postgres_reproduced_after_the_table_changed(toy, postgres, tmp_path):
    ingest(DATA, postgres, "rows_train", batches=2, start="2026-04-01T00:00:00", root=toy)
    ref = f"{postgres}?table=rows_train"
    r = cli("train", "--no-progress", "-p", "runs_dir", tmp_path, "-p", "data", ref, "-p", "as_of",
            "2026-04-01T12:00:00")
    assert r.returncode == 0, r.stderr
    [run] = list_runs(tmp_path)
    d = read_json(run / "manifest.json")["data"]
    assert (d["kind"], d["rows"], d["as_of"]) == ("sql", 100, "2026-04-01T12:00:00")
    ingest(DATA, postgres, "rows_train", start="2026-04-03T00:00:00", root=toy)  # the table changes
    for snap in (tmp_path / ".snapshots").iterdir(): snap.unlink()  # and the snapshot is gone: reload with as_of
    r = cli("reproduce", "--no-progress", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reloaded" in r.stdout and "as of 2026-04-01T12:00:00" in r.stdout and REPRODUCED in r.stdout


def test_corrupted_training_data_is_reported_and_nothing_is_trained(toy, tmp_path):
    raw = pd.read_csv(toy / DATA, dtype=str, keep_default_na=False)
    raw.loc[4, "area"] = "large"  # a string in a numeric column: key 5
    raw.loc[9, "area"] = "-3"     # outside the declared domain: key 10
    raw.drop(columns="grade").assign(Colour="red").to_csv(tmp_path / "bad.csv", index=False)
    r = cli("data", "validate", tmp_path / "bad.csv")
    assert r.returncode == 1
    assert "missing column(s): grade" in r.stderr and "unexpected column(s): Colour" in r.stderr
    raw.to_csv(tmp_path / "bad2.csv", index=False)
    r = cli("data", "validate", tmp_path / "bad2.csv")
    assert r.returncode == 1
    assert "column 'area', row key=5: 'large' is not a number" in r.stderr
    assert "column 'area', row key=10: -3.0 is outside the declared domain [0, inf]" in r.stderr, r.stderr
    r = cli("train", "--no-progress", "-p", "runs_dir", tmp_path / "runs", "-p", "data", tmp_path / "bad2.csv")
    assert r.returncode == 1 and "row key=5" in r.stderr
    assert list_runs(tmp_path / "runs") == [] and not (tmp_path / "runs" / ".snapshots").exists()
    raw.loc[4, "area"], raw.loc[9, "age"] = "inf", "1e39"  # numbers no model computes with
    raw.loc[9, "area"] = "3"
    raw.to_csv(tmp_path / "bad3.csv", index=False)
    r = cli("data", "validate", tmp_path / "bad3.csv")
    assert r.returncode == 1 and "column 'area', row key=5: 'inf' is not a finite number" in r.stderr
    assert "column 'age', row key=10: '1e39' is not a finite number" in r.stderr
    for rows in (0, 1):  # a header-only file, one row
        raw.head(rows).to_csv(tmp_path / "few.csv", index=False)
        r = cli("train", "--no-progress", "-p", "runs_dir", tmp_path / "runs", "-p", "data", tmp_path / "few.csv")
        assert r.returncode == 1 and f"{rows} row(s): training data needs at least 10" in r.stderr, r.stderr
    assert list_runs(tmp_path / "runs") == [] and not (tmp_path / "runs" / ".snapshots").exists()


@pytest.mark.parametrize("kind", ["parquet", "sqlite"])
def test_training_from_parquet_and_sqlite_gives_the_csv_model_and_reproduces_without_snapshot(toy, tmp_path, kind,
    toy_run):
    runs = tmp_path / "runs"
    if kind == "parquet":
        ref = str(tmp_path / "rows.parquet")
        load(DATA, toy).sample(frac=1, random_state=3).to_parquet(ref)
    else:
        shuffled_table(toy, f"sqlite:///{tmp_path}/t.db", "rows")
        ref = f"sqlite:///{tmp_path}/t.db?table=rows"
    r = cli("train", "--no-progress", "-p", "runs_dir", runs, "-p", "data", ref)
    assert r.returncode == 0, r.stderr
    [run] = list_runs(runs)
    r = cli("reproduce", run, "--against", toy_run())  # the same rows from another source: the same model
    assert r.returncode == 0 and REPRODUCED in r.stdout, r.stdout
    for snap in (runs / ".snapshots").iterdir(): snap.unlink()  # reload through the source's own path
    r = cli("reproduce", "--no-progress", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reloaded" in r.stdout and REPRODUCED in r.stdout


def test_a_database_password_is_never_written_down(toy, tmp_path):
    """A password in the data URL: used, and found in no file of the run store nor in any output; reproduce needs it
    from the environment."""
    if server_binaries() is None: pytest.skip("PostgreSQL server binaries are not installed")
    pw = "pw-" + secrets.token_hex(12)
    with temporary_postgres(password=pw) as url:  # the server asks for the password
        ingest(DATA, url, "rows_pw", root=toy)
        r = cli("train", "--no-progress", "-p", "runs_dir", tmp_path, "-p", "data", f"{url}?table=rows_pw")
        assert r.returncode == 0, r.stderr
        [run] = list_runs(tmp_path)
        leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and pw.encode() in p.read_bytes()]
        # manifest, executed notebook, report, snapshot, metrics...
        assert not leaks and pw not in r.stdout + r.stderr, leaks
        m = json.loads((run / "manifest.json").read_text())
        assert (m["data"]["reference"] == url.replace(f":{pw}@", "@")
                + "?table=rows_pw" == m["parameters"]["data"] == m["job"]["injected"]["data"])
        shutil.rmtree(tmp_path / ".snapshots")  # reproduce must load the table again
        r = cli("reproduce", "--no-progress", run, env={"DATABASE_PASSWORD": ""})
        assert r.returncode == 1 and "cannot be loaded again" in r.stdout and pw not in r.stdout + r.stderr, r.stdout
        r = cli("reproduce", "--no-progress", run, env={"DATABASE_PASSWORD": pw})
        assert r.returncode == 0 and REPRODUCED in r.stdout, r.stdout + r.stderr
        assert not [str(p) for p in tmp_path.rglob("*") if p.is_file() and pw.encode() in p.read_bytes()]


WINDOW = ("SELECT h.*, (SELECT AVG(r.area) FROM readings r WHERE r.key = h.key AND r.at <= :as_of "
          "AND r.at > datetime(:as_of, '-7 days')) AS area FROM homes h")  # each row's area: its week's mean reading


def test_a_window_aggregate_trained_as_of_two_times_without_snapshots_is_reproduced_after_later_events(toy, tmp_path):
    events = f"sqlite:///{tmp_path}/events.db"
    homes = load(DATA, toy)
    homes.drop(columns="area").to_sql("homes", events, index=False)
    days = pd.date_range("2026-03-01", periods=20, freq="D")
    readings = pd.DataFrame([(k, t, a * (1 + 0.01 * i)) for k, a in zip(homes.key, homes.area)
                             for i, t in enumerate(days)], columns=["key", "at", "area"])
    readings.to_sql("readings", events, index=False)
    ref, runs, times = f"{events}?" + urlencode({"query": WINDOW}), tmp_path / "runs", ["2026-03-08T12:00:00",
                                                                                        "2026-03-15T12:00:00"]
    for t in times:
        r = cli("train", "--no-progress", "-p", "runs_dir", runs, "-p", "data", ref, "-p", "as_of", t, "-p",
                "keep_snapshot", "false")
        assert r.returncode == 0, r.stderr
    made = list_runs(runs)
    data = [read_json(run / "manifest.json")["data"] for run in made]
    assert [d["as_of"] for d in data] == times and [d["snapshot"] for d in data] == [None, None]
    assert data[0]["fingerprint"] != data[1]["fingerprint"] and not list(runs.glob(".snapshots/*.parquet"))
    r = cli("runs", "--runs-dir", runs, "list")
    assert "without a snapshot of their data" in r.stdout and r.stdout.count("  read again as of 2026-03-") == 2, (
        r.stdout)
    # readings after both cut-offs: each run's query, as of its own time, reads what it trained on
    readings.assign(at=readings["at"] + pd.Timedelta(days=20)).to_sql("readings", events, index=False,
                                                                     if_exists="append")
    for run in made:
        r = cli("reproduce", "--no-progress", run)
        assert r.returncode == 0 and REPRODUCED in r.stdout and "no snapshot kept; reloaded" in r.stdout, r.stdout
    blind = f"{events}?" + urlencode({"query": "SELECT h.*, (SELECT AVG(r.area) FROM readings r "
                                               "WHERE r.key = h.key) AS area FROM homes h"})
    r = cli("train", "--no-progress", "-p", "runs_dir", runs, "-p", "data", blind, "-p", "as_of", times[0])
    assert r.returncode == 1 and "must use the cut-off itself, as the bound parameter :as_of" in r.stderr, r.stderr
    r = cli("train", "--no-progress", "-p", "runs_dir", runs, "-p", "keep_snapshot", "false")  # the toy's file
    assert r.returncode == 1 and "is a file, which can change or vanish" in r.stderr, r.stderr


def test_a_table_read_without_as_of_records_the_load_time_and_its_erased_snapshot_is_read_again(toy, tmp_path):
    url, runs = f"sqlite:///{tmp_path}/t.db", tmp_path / "runs"
    ingest(DATA, url, "stream", batches=2, start="2026-03-01T00:00:00", root=toy)
    r = cli("train", "--no-progress", "-p", "runs_dir", runs, "-p", "data", f"{url}?table=stream")
    assert r.returncode == 0, r.stderr
    [run] = list_runs(runs)
    m = read_json(run / "manifest.json")
    assert m["parameters"]["as_of"] in (None, "") and m["data"]["as_of"] >= "2026"  # the load time, recorded
    r = cli("runs", "--runs-dir", runs, "erase-snapshot", run.name)  # a dry run first
    assert r.returncode == 0 and "would erase" in r.stdout and f"{run.name}  data: read again as of" in r.stdout
    assert list(runs.glob(".snapshots/*.parquet"))
    assert cli("runs", "--runs-dir", runs, "erase-snapshot", run.name, "--yes").returncode == 0
    assert not list(runs.glob(".snapshots/*.parquet"))
    ingest(DATA, url, "stream", start="2030-01-01T00:00:00", root=toy)  # later rows, updated versions of every row
    r = cli("reproduce", "--no-progress", run)
    assert r.returncode == 0 and REPRODUCED in r.stdout and "snapshot gone; reloaded" in r.stdout, r.stdout
    # a run on a file: erasing its snapshot leaves it reproducible only while the file is unchanged
    assert cli("train", "--no-progress", "-p", "runs_dir", runs).returncode == 0
    newest = list_runs(runs)[-1]
    r = cli("runs", "--runs-dir", runs, "erase-snapshot", newest.name)
    assert "data: only while data/toy.csv is unchanged" in r.stdout, r.stdout
