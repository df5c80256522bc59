"""Training data from files, SQLite and a real PostgreSQL server: one fingerprint, as_of, snapshots, validation, no password written."""
import json
import secrets
import shutil

import pandas as pd
import pytest
from nbprod.runs import list_runs, read_json
from nbprod.sources import ingest, load
from pgserver import server_binaries, temporary_postgres

from house_prices.data import fingerprint

from conftest import house_prices_cli

SMALL = ["-p", "gbm_n_estimators", "60"]


@pytest.fixture(scope="session")
def postgres():
    "A real PostgreSQL server on loopback, in a temporary directory, for this test session."
    if server_binaries() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql (.ci/run does)")
    with temporary_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def csv_fp(settings):
    return fingerprint(load("data/house-prices/train.csv", settings.root))


def shuffled_table(settings, url, table):
    df = load("data/house-prices/train.csv", settings.root).sample(frac=1, random_state=7)
    df.to_sql(table, url, index=False, if_exists="replace")


def test_same_fingerprint_from_csv_parquet_sqlite_postgres_and_shuffled_tables(settings, postgres, tmp_path, csv_fp):
    raw = pd.read_csv(settings.train_csv, dtype=str, keep_default_na=False)
    raw.sample(frac=1, random_state=1).to_csv(tmp_path / "shuffled.csv", index=False)
    load("data/house-prices/train.csv", settings.root).to_parquet(tmp_path / "train.parquet")
    sqlite = f"sqlite:///{tmp_path}/h.db"
    shuffled_table(settings, sqlite, "houses")
    shuffled_table(settings, postgres, "houses_shuffled")
    ingest("data/house-prices/train.csv", postgres, "houses_ingested", batches=4, root=settings.root)
    refs = [tmp_path / "shuffled.csv", tmp_path / "train.parquet", f"{sqlite}?table=houses",
            f"{postgres}?table=houses_shuffled", f"{postgres}?table=houses_ingested",
            f'{postgres}?query=SELECT * FROM houses_shuffled']
    assert {str(r): fingerprint(load(str(r), settings.root)) for r in refs} == {str(r): csv_fp for r in refs}
    r = house_prices_cli("data", "fingerprint", f"{postgres}?table=houses_shuffled")
    assert r.returncode == 0 and r.stdout.startswith(csv_fp)


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_as_of_is_unchanged_by_later_appends_and_updates(settings, tmp_path, db, request):
    url = f"sqlite:///{tmp_path}/h.db" if db == "sqlite" else request.getfixturevalue("postgres")
    table = f"stream_{db}"
    ingest("data/house-prices/train.csv", url, table, batches=3, start="2026-03-01T00:00:00", root=settings.root)
    ref = f"{url}?table={table}"
    before = load(ref, as_of="2026-03-02T12:00:00")
    assert len(before) == 974
    changed = load("data/house-prices/train.csv", settings.root).head(100).assign(SalePrice=1.0)  # updated prices, later
    changed.assign(ingested_at=pd.Timestamp("2026-03-05")).to_sql(table, url, index=False, if_exists="append")
    after = load(ref, as_of="2026-03-02T12:00:00")
    assert fingerprint(after) == fingerprint(before)
    latest = load(ref)
    assert len(latest) == 1460 and (latest.head(100).SalePrice == 1.0).all()  # the newest version of each row


def test_training_from_postgres_reproduced_after_the_table_changed(settings, postgres, tmp_path):
    ingest("data/house-prices/train.csv", postgres, "houses_train", batches=2, start="2026-04-01T00:00:00", root=settings.root)
    ref = f"{postgres}?table=houses_train"
    r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", tmp_path, "-p", "data", ref, "-p", "as_of", "2026-04-01T12:00:00", *SMALL)
    assert r.returncode == 0, r.stderr
    [run] = list_runs(tmp_path)
    d = read_json(run / "manifest.json")["data"]
    assert (d["kind"], d["rows"], d["as_of"]) == ("sql", 730, "2026-04-01T12:00:00")
    ingest("data/house-prices/train.csv", postgres, "houses_train", start="2026-04-03T00:00:00", root=settings.root)  # the table changes
    for snap in (tmp_path / ".snapshots").iterdir(): snap.unlink()  # and the snapshot is gone: reload with as_of
    r = house_prices_cli("reproduce", "--no-progress", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reloaded" in r.stdout and "as of 2026-04-01T12:00:00" in r.stdout and "verdict: reproduced, bit-identical" in r.stdout


def test_corrupted_training_data_is_reported_and_nothing_is_trained(settings, tmp_path):
    raw = pd.read_csv(settings.train_csv, dtype=str, keep_default_na=False)
    raw.loc[4, "LotArea"] = "large"         # a string in a numeric column: Id 5
    raw.loc[9, "YearBuilt"] = "1066"        # outside the declared domain: Id 10
    raw.drop(columns="Street").assign(Colour="red").to_csv(tmp_path / "bad.csv", index=False)
    r = house_prices_cli("data", "validate", tmp_path / "bad.csv")
    assert r.returncode == 1
    assert "missing column(s): Street" in r.stderr and "unexpected column(s): Colour" in r.stderr
    raw.to_csv(tmp_path / "bad2.csv", index=False)
    r = house_prices_cli("data", "validate", tmp_path / "bad2.csv")
    assert r.returncode == 1
    assert "column 'LotArea', row Id=5: 'large' is not a number" in r.stderr
    assert "column 'YearBuilt', row Id=10: 1066.0 is outside the declared domain [1800, 2100]" in r.stderr
    r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", tmp_path / "runs", "-p", "data", tmp_path / "bad2.csv")
    assert r.returncode == 1 and "row Id=5" in r.stderr
    assert list_runs(tmp_path / "runs") == [] and not (tmp_path / "runs" / ".snapshots").exists()
    raw.loc[4, "LotArea"], raw.loc[9, "YearBuilt"] = "inf", "1e39"  # numbers no model computes with
    raw.to_csv(tmp_path / "bad3.csv", index=False)
    r = house_prices_cli("data", "validate", tmp_path / "bad3.csv")
    assert r.returncode == 1 and "column 'LotArea', row Id=5: 'inf' is not a finite number" in r.stderr
    assert "column 'YearBuilt', row Id=10: '1e39' is not a finite number" in r.stderr
    for rows in (0, 1):  # a header-only file, one row
        raw.head(rows).to_csv(tmp_path / "few.csv", index=False)
        r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", tmp_path / "runs", "-p", "data", tmp_path / "few.csv")
        assert r.returncode == 1 and f"{rows} row(s): training data needs at least 10" in r.stderr, r.stderr
    assert list_runs(tmp_path / "runs") == [] and not (tmp_path / "runs" / ".snapshots").exists()


@pytest.mark.parametrize("kind", ["parquet", "sqlite"])
def test_training_from_parquet_and_sqlite_gives_the_csv_model_and_reproduces_without_snapshot(settings, tmp_path, kind, train_job):
    runs = tmp_path / "runs"
    if kind == "parquet":
        ref = str(tmp_path / "houses.parquet")
        load("data/house-prices/train.csv", settings.root).sample(frac=1, random_state=3).to_parquet(ref)
    else:
        shuffled_table(settings, f"sqlite:///{tmp_path}/h.db", "houses")
        ref = f"sqlite:///{tmp_path}/h.db?table=houses"
    r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", runs, "-p", "data", ref, *SMALL)
    assert r.returncode == 0, r.stderr
    [run], from_csv = list_runs(runs), train_job(gbm_n_estimators=60)  # the same parameters on data/house-prices/train.csv
    r = house_prices_cli("reproduce", run, "--against", from_csv)  # the same rows from another source: the same model
    assert r.returncode == 0 and "verdict: reproduced, bit-identical" in r.stdout, r.stdout
    for snap in (runs / ".snapshots").iterdir(): snap.unlink()  # reload through the source's own path
    r = house_prices_cli("reproduce", "--no-progress", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reloaded" in r.stdout and "verdict: reproduced, bit-identical" in r.stdout


def test_a_database_password_is_never_written_down(settings, tmp_path):
    "A password in the data URL: used, and found in no file of the run store nor in any output; reproduce needs it from the environment."
    if server_binaries() is None: pytest.skip("PostgreSQL server binaries are not installed")
    pw = "pw-" + secrets.token_hex(12)
    with temporary_postgres(password=pw) as url:  # the server asks for the password
        ingest("data/house-prices/train.csv", url, "houses_pw", root=settings.root)
        r = house_prices_cli("train", "--no-progress", "-p", "runs_dir", tmp_path, "-p", "data", f"{url}?table=houses_pw", *SMALL)
        assert r.returncode == 0, r.stderr
        [run] = list_runs(tmp_path)
        leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and pw.encode() in p.read_bytes()]
        assert not leaks and pw not in r.stdout + r.stderr, leaks  # manifest, executed notebook, report, snapshot, metrics...
        m = json.loads((run / "manifest.json").read_text())
        assert m["data"]["reference"] == url.replace(f":{pw}@", "@") + "?table=houses_pw" == m["parameters"]["data"] == m["job"]["injected"]["data"]
        shutil.rmtree(tmp_path / ".snapshots")  # reproduce must load the table again
        r = house_prices_cli("reproduce", "--no-progress", run, env={"DATABASE_PASSWORD": ""})
        assert r.returncode == 1 and "cannot be loaded again" in r.stdout and pw not in r.stdout + r.stderr, r.stdout
        r = house_prices_cli("reproduce", "--no-progress", run, env={"DATABASE_PASSWORD": pw})
        assert r.returncode == 0 and "verdict: reproduced, bit-identical" in r.stdout, r.stdout + r.stderr
        assert not [str(p) for p in tmp_path.rglob("*") if p.is_file() and pw.encode() in p.read_bytes()]
