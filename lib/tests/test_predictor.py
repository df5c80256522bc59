"""The Predictor on a real run: the input contract, row-level errors, nothing dropped, and the checking paths (value by
value, column by column, Arrow's) agree on every record, of a toy project's rows and of rows with every kind of
problem."""
import math

import numpy as np
import pandas as pd
import pytest

from nbprod.agreement import DIFFERENT, agree
from nbprod.contract import (
    ID_EXPECTED,
    TOO_LARGE,
    check_records,
    check_rows,
    check_table,
    known_categories,
    omitted_fields,
)
from nbprod.predict import Predictor
from nbprod.runs import read_json
from nbprod.schema import read_raw_csv
from nbprod.toy import toy_rows


@pytest.fixture(scope="module")
def run(toy_run):
    return toy_run()


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor.load(run)


@pytest.fixture(scope="module")
def new_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("predictor") / "new.csv"
    toy_rows(500, seed=4, target=False, start=1001).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def new_frame(new_csv):
    return read_raw_csv(new_csv)


@pytest.fixture(scope="module")
def new_records(new_frame):
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in new_frame.to_dict("records")]


def test_contract_is_stored_with_the_run(run, predictor):
    contract = read_json(run / "contract.json")
    assert contract == predictor.contract.to_json()  # contract.json is the typed contract, as JSON
    f = {x["name"]: x for x in contract["fields"]}
    assert f["grade"]["required"] and f["grade"]["categories"] == ["A", "B", "C"]
    assert f["colour"]["na"] == "absent" and f["age"]["na"] == "unknown" and f["area"]["required"]


def test_every_row_is_scored(predictor, new_frame):
    before = new_frame.copy()
    out = predictor.predict(new_frame)
    assert len(out) == 500 and out.predicted.notna().all() and out.error.isna().all()
    assert out.key.tolist() == new_frame.key.astype(int).tolist()
    pd.testing.assert_frame_equal(new_frame, before)  # the caller's frame is not modified
    imputed = out.warnings.dropna()
    assert imputed.str.contains("imputed from the training data").all()
    assert imputed.str.contains("age").sum() == new_frame.age.isna().sum() > 0


def test_records_and_frame_give_the_same_predictions(predictor, new_frame, new_records):
    a = predictor.predict(new_frame).predicted.to_numpy()
    b = np.concatenate([predictor.predict(new_records[i:i + 70]).predicted.to_numpy() for i in range(0, 500, 70)])
    # within RTOL, not to the bit: the toy's ridge sums through BLAS, whose order may follow the rows' count
    assert agree(b, a).tier != DIFFERENT


def corrupted(records):
    "Records with one problem each, of every kind the contract knows."
    base = records[0]
    return [
        {**base, "area": "abc"}, {**base, "area": True}, {**base, "area": [1]}, {**base, "area": {"a": 1}},
        {**base, "area": float("nan")}, {**base, "area": float("inf")}, {**base, "area": "inf"},
        {**base, "area": "1e3"},
        {**base, "area": 84}, {**base, "area": 84.5}, {**base, "area": " 12"}, {**base, "area": ""},
        {**base, "age": None}, {**base, "age": "NaN"}, {**base, "age": -1e400},
        {**base, "grade": None}, {**base, "grade": 3}, {**base, "grade": False}, {**base, "grade": ["A"]},
        {**base, "grade": "Z"}, {**base, "grade": 20}, {**base, "grade": 20.0}, {**base, "grade": 20.5},
        {**base, "colour": None}, {**base, "colour": ""}, {**base, "key": "x"}, {**base, "key": 3.5},
        {**base, "key": True},
        {**base, "key": None}, {**base, "extra": 1}, {k: v for k, v in base.items() if k != "grade"},
        {k: v for k, v in base.items() if k != "age"}, {**base, "grade": "Ünïcødé\x00"}, {},
    ]


def sorted_issues(issues):
    return issues.frame().sort_values(["row", "column", "level", "message"]).reset_index(drop=True)


@pytest.mark.parametrize("which", ["new rows", "corrupted"])
def test_value_by_value_and_column_by_column_checks_agree(predictor, new_records, which):
    records = new_records if which == "new rows" else corrupted(new_records)
    before = repr(records)  # (repr, not ==: NaN != NaN)
    f1, ok1, i1 = check_records(records, predictor.contract)
    # a frame of records, with which fields each left out (a frame has NaN for a field not sent as for a null)
    f2, ok2, i2 = check_rows(pd.DataFrame.from_records(records), predictor.contract,
                             known=known_categories(predictor.contract),
                             omitted=omitted_fields(records, predictor.contract))
    assert repr(records) == before  # the caller's records are not modified
    assert ok1.tolist() == ok2.tolist()
    pd.testing.assert_frame_equal(f1[ok1].reset_index(drop=True), f2[ok2].reset_index(drop=True))
    pd.testing.assert_frame_equal(sorted_issues(i1), sorted_issues(i2))


def test_row_level_errors_name_row_column_value_and_expectation(predictor, new_records):
    cases = corrupted(new_records)
    out = predictor.predict(cases)
    refused = out[out.predicted.isna()]
    assert refused.error.notna().all() and out[out.predicted.notna()].error.isna().all()
    by_row = dict(zip(refused.index, refused.error))
    assert by_row[0] == "area: expected a number (got 'abc')"
    assert by_row[1] == "area: expected a number, got bool (got True)"
    assert by_row[5] == f"area: {TOO_LARGE} (got inf)"
    assert by_row[15] == "grade: is missing, but this column must have a value"
    assert by_row[25] == f"key: {ID_EXPECTED} (got 'x')"
    scored = out[out.predicted.notna()]
    assert "grade: category 'Z' was not seen in training" in scored.warnings[19]
    assert "extra: is not a field of the model: ignored" in scored.warnings[29]
    assert len(out) == len(cases)  # nothing dropped


def test_empty_input(predictor):
    assert len(predictor.predict([])) == 0
    assert len(predictor.predict(pd.DataFrame())) == 0


TEXT_CASES = {  # text a CSV cell can hold, in a numeric column, a categorical one and the id column
    "area": ["abc", "inf", "-inf", "nan", "NaN", "1e3", "84.5", " 12", "12 ", "+5", "-0", "1e500", "1e-400", "0x10",
             "1_000", "１２", "3.4e38", "3.5e38"],
    "grade": ["Z", " A", "a", "Ünïcødé", "20", "20.0"],
    "key": ["x", "3.5", " 7", "007", "+7", "-3", "9223372036854775807", "9223372036854775808", "1e3", "7.0"],
}


def text_table(path):
    "A CSV file as the batch reader reads it: every column as text."
    import pyarrow as pa

    from nbprod.batch import read_chunks
    return pa.concat_tables(read_chunks(path, chunk_size=100_000)[1])


@pytest.mark.parametrize("which", ["new rows", "corrupted"])
def test_arrow_and_pandas_checks_agree_on_text(predictor, new_csv, tmp_path, which):
    path = new_csv
    if which == "corrupted":
        first = pd.read_csv(new_csv, dtype=str, keep_default_na=False).iloc[0].to_dict()
        rows = [first | {col: v} for col, values in TEXT_CASES.items() for v in values]
        rows += [first | {"area": ""}, first | {"grade": "NA"}, first | {"colour": "NA"}, first | {"age": ""}]
        pd.DataFrame(rows).to_csv(path := tmp_path / "corrupted.csv", index=False)
    table = text_table(path)
    frame = read_raw_csv(path)
    cols, ids, ok1, i1 = check_table(table, predictor.contract, predictor._fast.categories)
    canon, ok2, i2 = check_rows(frame, predictor.contract, known=known_categories(predictor.contract))
    assert ok1.tolist() == ok2.tolist()
    pd.testing.assert_frame_equal(sorted_issues(i1), sorted_issues(i2))
    assert ids.tolist() == canon.key.tolist()
    for f in predictor.contract.fields:  # the same values: numbers to the bit, categories as codes of the same strings
        if f.kind == "numeric":
            assert np.array_equal(cols[f.name][ok1], canon[f.name].to_numpy()[ok1], equal_nan=True), f.name
        else:
            cats = predictor._fast.categories[f.name]
            strings = canon[f.name].to_numpy(dtype=object, na_value=None)
            expected = [-1 if s is None else (cats.get_loc(s) if s in cats else len(cats)) for s in strings]
            assert cols[f.name][ok1].tolist() == np.array(expected)[ok1].tolist(), f.name
    a, b = predictor.score_table(table), predictor.score(frame)
    assert np.array_equal(a.predictions, b.predictions, equal_nan=True)
    pd.testing.assert_frame_equal(a.frame(), b.frame())
