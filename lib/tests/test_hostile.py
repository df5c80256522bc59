"""Hostile input, second round: checks on request text cost linear time and agree across the one-record path, the
many-record path and the batch path; a record that holds a key twice is refused; no command writes over what it reads;
weak keys are refused; a run's name and the store's files cannot be forged; Arrow types and compressed files are read
on purpose or named. On a toy project's runs, through its real command and service."""
import csv
import datetime
import gzip
import json
import re
import shutil
import subprocess
import sys
from decimal import Decimal

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from nbprod.agreement import DIFFERENT, agree
from nbprod.batch import score_file
from nbprod.contract import NUMBER_RE, derive_contract
from nbprod.predict import SMALL_BATCH, Predictor
from nbprod.runs import list_runs, resolve_run
from nbprod.schema import read_raw_csv, to_canonical
from nbprod.toy import toy_pipeline, toy_project, toy_rows, toy_schema

from toys import cli, records_of, serving

# the pattern before: the same strings, with quadratic backtracking
OLD_NUMBER_RE = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
ASCII_NUMBERISH = st.text(alphabet="0123456789.eE+- x", max_size=16)


@given(ASCII_NUMBERISH)
def test_the_number_pattern_takes_the_same_ascii_strings_as_before_in_python_and_in_arrow(s):
    new = re.fullmatch(NUMBER_RE, s) is not None
    assert new == (re.fullmatch(OLD_NUMBER_RE, s) is not None), s
    # Arrow's RE2, as the batch path reads
    assert new == pc.match_substring_regex(pa.array([s]), f"^(?:{NUMBER_RE})$")[0].as_py(), s


def test_the_number_pattern_refuses_other_scripts_digits():
    for s in ("١٢", "１２", "१२", "1_000", " 1", "1 ", "0x1f", "1e", "e1", "."):
        assert re.fullmatch(NUMBER_RE, s) is None, s


@pytest.fixture(scope="module")
def predictor():
    """A toy regression model and its contract: area (required number), age (number, may be unknown), colour (absent),
    grade (required)."""
    schema = toy_schema()
    train = to_canonical(toy_rows(300), schema)
    return Predictor(toy_pipeline().fit(train[schema.features], train[schema.target]),
                     derive_contract(train, schema, prediction="y"))


NA = {"NA", ""}
number_text = st.one_of(st.from_regex(NUMBER_RE, fullmatch=True).filter(lambda s: len(s) < 30), ASCII_NUMBERISH,
                        st.sampled_from(["1e400", "-1e400", "nan", "inf", "-inf", "١٢", "１２", "1_000", " 7", "7 ",
                                         "+.5", "5.", "0" * 30 + "1", "0" * 400 + "1"]))
category_text = st.one_of(st.sampled_from(["red", "blue", "green", "A", "B", "C", "none", "Red", " red"]),
                          st.text(max_size=6))
record = st.fixed_dictionaries({"key": st.one_of(st.integers(1, 10**6).map(str),
                                                 st.sampled_from(["x", "1.5", "9" * 25, "-3"])),
                                "area": number_text, "age": number_text, "colour": category_text,
                                "grade": category_text})


def answers(scored):
    "Per row: the prediction (None where refused), its errors and its warnings, as text."
    f = scored.frame()
    return [(None if not ok else p, e, w) for ok, p, e, w in zip(scored.ok, f["y"], f["error"], f["warnings"])]


def same(a, b):
    """The same answers: the same errors and warnings to the letter, predictions within the tolerance (the toy's Ridge
    sums through BLAS)."""
    assert [x[1:] for x in a] == [x[1:] for x in b]
    assert [x[0] is None for x in a] == [x[0] is None for x in b]
    got = np.array([x[0] for x in a if x[0] is not None], float)
    want = np.array([x[0] for x in b if x[0] is not None], float)
    assert agree(got, want).tier != DIFFERENT


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rec=record)
def test_one_record_many_records_and_the_batch_path_give_the_same_answers(predictor, rec, tmp_path_factory):
    """The same record alone, among 300 (checked column by column) and in a CSV file scored by `predict`'s code: the
    same answer."""
    # a CSV cannot tell "NA" from missing: the file's convention, not a rule
    rec = {k: (None if v in NA else v) for k, v in rec.items()}
    one = answers(predictor.score([rec]))
    many = answers(predictor.score([rec] * (SMALL_BATCH + 44)))
    assert all(m == many[0] for m in many)
    same(one, many[:1])
    d = tmp_path_factory.mktemp("batch")
    with open(d / "in.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rec)); w.writeheader(); w.writerow({k: "" if v is None else v for k,
            v in rec.items()})
    score_file(predictor, d / "in.csv", d / "out.csv")
    out = pd.read_csv(d / "out.csv", dtype={"error": object})
    assert (None if pd.isna(out["error"][0]) else out["error"][0]) == one[0][1]
    assert pd.isna(out["y"][0]) == (one[0][0] is None)
    if one[0][0] is not None: assert agree(out["y"].to_numpy(), np.array([one[0][0]])).tier != DIFFERENT


def new_csv(path, n=40):
    "A file of `n` toy rows the runs never saw (keys from 5001), as a client sends them; its path."
    toy_rows(n, seed=5, target=False, start=5001).to_csv(path, index=False)
    return path


def test_the_batch_command_answers_hostile_text_as_the_one_record_path(tmp_path, toy_run):
    """The real `predict` command on a file of records with hostile text in a number and a category answers as
    `score([record])`."""
    run = toy_run()
    p = Predictor.load(run)
    rows = read_raw_csv(new_csv(tmp_path / "rows.csv"))
    rng = np.random.default_rng(0)
    texts = ["١٢", "1_000", " 7", "+.5", "5.", "1e400", "x", "", "0" * 30 + "1", "9" * 5000 + "x", "0" * 400 + "1"]
    for i in range(len(rows)):
        rows.loc[i, "area"] = texts[i % len(texts)]
        rows.loc[i, "colour"] = rng.choice(["red", "mauve", "", "Red"])
    rows.to_csv(tmp_path / "in.csv", index=False)
    r = cli("predict", "--run", run, "--allow-errors", tmp_path / "in.csv", "-o", tmp_path / "out.csv")
    assert r.returncode == 0, r.stderr
    out = pd.read_csv(tmp_path / "out.csv", dtype={"error": object})
    for i, rec in enumerate(records_of(read_raw_csv(tmp_path / "in.csv"))):
        alone = p.score([rec])
        assert (None if pd.isna(out.error[i]) else out.error[i]) == alone.frame().error[0], (i, rec["area"])
        assert pd.isna(out.predicted[i]) == (not alone.ok[0]), i
        if alone.ok[0]: assert agree(out.predicted.to_numpy()[i:i + 1], alone.predictions).tier != DIFFERENT, i


@pytest.fixture(scope="module")
def server(toy_run, tmp_path_factory):
    with serving(tmp_path_factory.mktemp("hostile") / "server.log", "--run", toy_run()) as (url, _):
        yield url


@pytest.fixture(scope="module")
def new_records():
    return records_of(toy_rows(2, seed=5, target=False, start=5001))


def test_a_record_holding_a_key_twice_is_refused_alone(server, new_records):
    rec = json.dumps(new_records[0])[:-1] + ', "area": 9999}'  # area given again, at the end
    r = httpx.post(server + "/predict", content=f"[{rec}, {json.dumps(new_records[1])}]",
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text
    first, second = r.json()["predictions"]
    assert first["predicted"] is None and [e["field"] for e in first["errors"]] == ["area"], first
    assert "given more than once in this record" in first["errors"][0]["msg"] and np.isfinite(second["predicted"])
    r = httpx.post(server + "/predict", content='{"records": [], "records": [{}]}',
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 422 and "records given more than once" in r.json()["detail"][0]["msg"]


def test_long_number_strings_are_refused_in_time_linear_in_their_length(server, new_records):
    """A 1 MB string where a number is expected (the old pattern took seconds for 24 KB, quadratically): refused as no
    number, by field."""
    for n in (24_000, 1_000_000):
        recs = [{**new_records[0], "area": "1" * n + "x"}, {**new_records[1], "age": "1" * n + ".5e"}]
        r = httpx.post(server + "/predict", json=recs, timeout=60)
        assert r.status_code == 200 and [p["errors"][0]["msg"]
                                         for p in r.json()["predictions"]] == ["expected a number"] * 2, r.text[:300]
    assert httpx.get(server + "/health", timeout=5).status_code == 200


def test_no_output_is_written_over_the_input_or_another_output(tmp_path, toy_run):
    run = toy_run()
    data = new_csv(tmp_path / "same.csv")
    before = data.read_bytes()
    (tmp_path / "sub").mkdir(); (tmp_path / "link.csv").symlink_to(data)
    for args in (["-o", data], ["-o", tmp_path / "sub" / ".." / "same.csv"], ["-o", tmp_path / "link.csv"],
                 ["-o", tmp_path / "out.csv", "--issues-file", data],
                 ["-o", tmp_path / "both.csv", "--issues-file", tmp_path / "both.csv"]):
        r = cli("predict", "--run", run, data, *args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert "writing there would destroy it" in r.stderr or "are the same file" in r.stderr, (args, r.stderr)
        assert (data.read_bytes() == before and not (tmp_path / "both.csv").exists()
                and not (tmp_path / "out.csv").exists())
    assert not list(tmp_path.glob(".*.tmp"))
    r = cli("predict", "--run", run, data, "-o", tmp_path / "out.csv", "--issues-file", tmp_path / "issues.csv")
    assert r.returncode in (0, 1) and (tmp_path / "out.csv").is_file() and (tmp_path / "issues.csv").is_file(), r.stderr
    r = cli("drift", "--run", run, data, "--report", tmp_path / "r.html", "--json", tmp_path / "r.html")
    assert r.returncode == 1 and "are the same file" in r.stderr, r.stderr


@pytest.mark.parametrize("key", [b"", b"  \n", b"short key\n"])
def test_a_weak_key_signs_nothing_and_checks_nothing(key, tmp_path, toy_run):
    "An empty, blank or guessable key file: training stops before it starts, and no command trusts a run with it."
    (tmp_path / "weak.key").write_bytes(key); (tmp_path / "weak.key").chmod(0o600)
    env = {"RUN_SIGNING_KEY_FILE": str(tmp_path / "weak.key")}
    r = cli("train", "--no-progress", "-p", "runs_dir", tmp_path / "runs", env=env)
    assert r.returncode == 1 and "can be guessed" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists() or not list_runs(tmp_path / "runs")  # refused before a run was staged
    r = cli("predict", "--run", toy_run(), new_csv(tmp_path / "in.csv"), "-o", tmp_path / "o.csv", env=env)
    assert r.returncode == 1 and "can be guessed" in r.stderr and not (tmp_path / "o.csv").exists(), r.stderr


def test_a_key_file_others_can_read_is_refused(tmp_path, toy_run, signing_key):
    k = tmp_path / "shared.key"
    k.write_bytes(open(signing_key, "rb").read()); k.chmod(0o644)
    r = cli("predict", "--run", toy_run(), new_csv(tmp_path / "in.csv"), "-o", tmp_path / "o.csv",
            env={"RUN_SIGNING_KEY_FILE": str(k)})
    assert r.returncode == 1 and "can be read or changed by other users (mode 644)" in r.stderr, r.stderr


@pytest.fixture
def store(toy_run, tmp_path):
    "A run store of its own with two runs (split seeds 0 and 1)."
    runs = [toy_run(), toy_run(seed=1)]
    for r in runs: shutil.copytree(r, tmp_path / "runs" / r.name)
    return tmp_path / "runs", [r.name for r in runs]


def test_a_signed_run_under_another_name_is_not_that_run(store, tmp_path):
    runs_dir, (a, b) = store
    shutil.copytree(runs_dir / a, runs_dir / "29990101T000000Z-c0ffee")  # signed, and newer by name
    r = cli("runs", "--runs-dir", runs_dir, "list")
    assert r.returncode == 0 and re.search(r"29990101T000000Z-c0ffee\s+damaged", r.stdout), r.stdout
    r = cli("predict", "--run", runs_dir / "29990101T000000Z-c0ffee", new_csv(tmp_path / "in.csv"), "-o",
            tmp_path / "o.csv")
    assert r.returncode == 1 and f"its manifest is of run {a}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert resolve_run("latest", runs_dir).name == b  # the copy is not the newest run


def test_aliases_name_runs_inside_the_store_and_damaged_store_files_are_named(store, tmp_path):
    runs_dir, (a, b) = store
    data, root = new_csv(tmp_path / "in.csv"), {toy_project().root_env_var: str(runs_dir.parent)}
    outside = tmp_path / "elsewhere"; shutil.copytree(runs_dir / a, outside / a)
    r = cli("runs", "--runs-dir", runs_dir, "promote", outside / a, "--force", "--reason", "a run from elsewhere")
    assert (r.returncode == 1 and "is not a run of the store" in r.stderr
            and not (runs_dir / "aliases.json").exists()), r.stderr
    for aliases in ({"production": f"../elsewhere/{a}"}, {"production": str(outside / a)}):
        (runs_dir / "aliases.json").write_text(json.dumps(aliases))
        r = cli("predict", "--run", "production", data, "-o", tmp_path / "o.csv", env=root)
        assert r.returncode == 1 and "not a run of the store" in r.stderr and "Traceback" not in r.stderr, r.stderr
    (runs_dir / "aliases.json").write_text('{"production": ')
    for args in (["runs", "--runs-dir", runs_dir, "promote", b],
                 ["predict", "--run", "production", data, "-o", tmp_path / "o.csv"]):
        r = cli(*args, env=root)
        assert r.returncode == 1 and "aliases.json is damaged" in r.stderr and "Traceback" not in r.stderr, (args,
            r.stderr)
    (runs_dir / "aliases.json").unlink()
    # a line cut short
    (runs_dir / "promotions.jsonl").write_text('{"time": "2026-12-01T00:00:00+00:00", "alias": "produ\n')
    r = cli("runs", "--runs-dir", runs_dir, "promote", b)
    assert (r.returncode == 1 and "promotions.jsonl, line 1, is damaged" in r.stderr
            and "Traceback" not in r.stderr), r.stderr


def test_promotions_at_once_lose_no_alias_and_report_what_happened(store):
    """Two `runs promote` at once: of different aliases, both move; of one alias, the alias and the log agree with what
    each reported."""
    runs_dir, (a, b) = store
    def promote(*args):
        return subprocess.Popen([sys.executable, "-m", "nbprod.cli", "runs", "--runs-dir", str(runs_dir), "promote",
                                 *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(3):
        (runs_dir / "aliases.json").unlink(missing_ok=True); (runs_dir / "promotions.jsonl").unlink(missing_ok=True)
        procs = [promote(a, "--alias", "staging"), promote(b, "--alias", "canary")]
        assert [p.wait(timeout=120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
        assert json.loads((runs_dir / "aliases.json").read_text()) == {"staging": a, "canary": b}
    for _ in range(3):
        (runs_dir / "aliases.json").unlink(missing_ok=True); (runs_dir / "promotions.jsonl").unlink(missing_ok=True)
        procs = [promote(a, "--force", "--reason", "test"), promote(b, "--force", "--reason", "test")]
        codes = [p.wait(timeout=120) for p in procs]
        log = [json.loads(line) for line in (runs_dir / "promotions.jsonl").read_text().splitlines()]
        held = json.loads((runs_dir / "aliases.json").read_text())["production"]
        # every success logged, the last one holds it
        assert len(log) == codes.count(0) >= 1 and log[-1]["run"] == held, (codes, log, held)
        for code, p in zip(codes, procs):
            if code: assert "while it was checked, 'production' moved" in p.stderr.read()
        assert [line["previous"] for line in log] == [None, log[0]["run"]][:len(log)]  # the second saw the first


def test_arrow_types_the_schema_does_not_name_are_refused_by_column_or_read_on_purpose(toy_run, tmp_path):
    """A time where a number is expected is refused (never read as nanoseconds); booleans are no category; decimals and
    dictionary columns are read."""
    p = Predictor.load(toy_run())
    raw = read_raw_csv(new_csv(tmp_path / "in.csv", 5))
    good = pa.Table.from_pandas(raw, preserve_index=False)
    want = p.score_table(good).frame()
    def with_column(name, arr): return good.set_column(good.column_names.index(name), name, arr)
    seconds = pa.array(pd.to_datetime(raw.area.astype(float).astype(int), unit="s"))
    cases = {"area as timestamp[ns]": (with_column("area", seconds),
                                       "expected a number, got a value of type datetime64"),
             "grade as bool": (with_column("grade", pa.array([True, False, True, False, True])),
                               "grade: expected a string, got bool"),
             "age as date32": (with_column("age", pa.array([datetime.date(2000, 1, 1)] * 5)),
                               "age: expected a number, got date")}
    for name, (table, message) in cases.items():
        pq.write_table(table, tmp_path / "t.parquet")
        r = cli("predict", "--run", toy_run(), tmp_path / "t.parquet", "-o", tmp_path / "o.csv")
        out = pd.read_csv(tmp_path / "o.csv") if (tmp_path / "o.csv").exists() else None
        assert r.returncode == 1 and out is not None and out.predicted.isna().all(), (name, r.stderr)
        assert all(message in e for e in out.error.dropna()), (name, out.error.tolist())
        (tmp_path / "o.csv").unlink()
    decimals = with_column("area", pa.array([Decimal(v) for v in raw.area], pa.decimal128(12, 2)))
    dictionary = with_column("colour", pa.array(raw.colour).dictionary_encode())
    for table in (decimals, dictionary):  # the same numbers and categories in another Arrow type: the same answers
        got = p.score_table(table).frame()
        assert got.error.isna().all() and agree(got.predicted.to_numpy(),
                                                want.predicted.to_numpy()).tier != DIFFERENT, got.error.tolist()


def test_a_compressed_csv_is_read_and_one_named_otherwise_is_named(toy_run, tmp_path):
    text = new_csv(tmp_path / "rows.csv", 300).read_bytes()
    (tmp_path / "in.csv").write_bytes(text)
    (tmp_path / "in.csv.gz").write_bytes(gzip.compress(text))
    r = cli("predict", "--run", toy_run(), tmp_path / "in.csv", "-o", tmp_path / "plain.csv")
    assert r.returncode == 0, r.stderr
    r = cli("predict", "--run", toy_run(), tmp_path / "in.csv.gz", "-o", tmp_path / "out.csv.gz")
    assert r.returncode == 0, r.stderr
    # read compressed, written compressed
    assert pd.read_csv(tmp_path / "out.csv.gz").equals(pd.read_csv(tmp_path / "plain.csv"))
    (tmp_path / "hidden.csv").write_bytes(gzip.compress(text))
    r = cli("predict", "--run", toy_run(), tmp_path / "hidden.csv", "-o", tmp_path / "o.csv")
    assert r.returncode == 1 and "compressed, but its name does not say so: name it hidden.csv.gz" in r.stderr, r.stderr
    (tmp_path / "latin.csv").write_bytes(text.replace(b"red", "rød".encode("latin-1")))
    r = cli("predict", "--run", toy_run(), tmp_path / "latin.csv", "-o", tmp_path / "o.csv")
    assert r.returncode == 1 and "UTF" in r.stderr and "Traceback" not in r.stderr, r.stderr
