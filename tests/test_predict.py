"""Predictor on a real run: the input contract, row-level errors, nothing dropped, and both checking paths agree."""
import math

import numpy as np
import pandas as pd
import pytest
from nbprod.predict import ID_EXPECTED, TOO_LARGE, Predictor, check_records, check_rows, known_categories
from nbprod.runs import read_json

from house_prices.data import read_raw_csv


@pytest.fixture(scope="module")
def predictor(train_job):
    return Predictor.load(train_job())


@pytest.fixture(scope="module")
def test_frame(settings):
    return read_raw_csv(settings.test_csv)


@pytest.fixture(scope="module")
def test_records(test_frame):
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in test_frame.to_dict("records")]


def test_contract_is_stored_with_the_run(train_job, predictor):
    contract = read_json(train_job() / "contract.json")
    assert contract == predictor.contract.to_json()  # contract.json is the typed contract, as JSON
    f = {x["name"]: x for x in contract["fields"]}
    assert f["Neighborhood"]["required"] and len(f["Neighborhood"]["categories"]) == 25
    assert f["PoolQC"]["na"] == "absent" and f["LotFrontage"]["na"] == "unknown"


def test_every_row_of_test_csv_is_scored(predictor, test_frame):
    before = test_frame.copy()
    out = predictor.predict(test_frame)
    assert len(out) == 1459 and out.SalePrice.notna().all() and out.error.isna().all()
    assert out.Id.tolist() == test_frame.Id.astype(int).tolist()
    pd.testing.assert_frame_equal(test_frame, before)
    imputed = out.warnings.dropna()
    assert imputed.str.contains("imputed from the training data").all()
    assert imputed.str.contains("MSZoning").sum() == test_frame.MSZoning.isna().sum() == 4


def test_records_and_frame_give_the_same_prices(predictor, test_frame, test_records):
    a = predictor.predict(test_frame).SalePrice.to_numpy()
    b = np.concatenate([predictor.predict(test_records[i:i + 200]).SalePrice.to_numpy() for i in range(0, 1459, 200)])
    assert (a == b).all()


def corrupted(records):
    "Records with one problem each, of every kind the contract knows."
    base = records[0]
    cases = [
        {**base, "LotArea": "abc"}, {**base, "LotArea": True}, {**base, "LotArea": [1]}, {**base, "LotArea": {"a": 1}},
        {**base, "LotArea": float("nan")}, {**base, "LotArea": float("inf")}, {**base, "LotArea": "inf"}, {**base, "LotArea": "1e3"},
        {**base, "LotArea": 8450}, {**base, "LotArea": 8450.5}, {**base, "LotArea": " 12"}, {**base, "LotArea": ""},
        {**base, "LotFrontage": None}, {**base, "LotFrontage": "NaN"}, {**base, "GarageYrBlt": None},
        {**base, "Street": None}, {**base, "Street": 3}, {**base, "Street": False}, {**base, "Street": ["Pave"]},
        {**base, "Neighborhood": "Atlantis"}, {**base, "MSSubClass": 20}, {**base, "MSSubClass": 20.0}, {**base, "MSSubClass": 20.5},
        {**base, "MSZoning": None}, {**base, "Alley": ""}, {**base, "Id": "x"}, {**base, "Id": 3.5}, {**base, "Id": True},
        {**base, "Id": None}, {**base, "Extra": 1}, {k: v for k, v in base.items() if k != "Street"},
        {k: v for k, v in base.items() if k != "LotFrontage"}, {**base, "Neighborhood": "Ünïcødé\x00"}, {},
    ]
    return cases


def sorted_issues(issues):
    return issues.frame().sort_values(["row", "column", "level", "message"]).reset_index(drop=True)


@pytest.mark.parametrize("which", ["test.csv", "corrupted"])
def test_value_by_value_and_column_by_column_checks_agree(predictor, test_records, which):
    records = test_records if which == "test.csv" else corrupted(test_records)
    before = repr(records)  # (repr, not ==: NaN != NaN)
    f1, ok1, i1 = check_records(records, predictor.contract)
    f2, ok2, i2 = check_rows(pd.DataFrame.from_records(records), predictor.contract, known=known_categories(predictor.contract))
    assert repr(records) == before  # the caller's records are not modified
    assert ok1.tolist() == ok2.tolist()
    pd.testing.assert_frame_equal(f1[ok1].reset_index(drop=True), f2[ok2].reset_index(drop=True))
    pd.testing.assert_frame_equal(sorted_issues(i1), sorted_issues(i2))


def test_row_level_errors_name_row_column_value_and_expectation(predictor, test_records):
    out = predictor.predict(corrupted(test_records))
    refused = out[out.SalePrice.isna()]
    assert refused.error.notna().all() and out[out.SalePrice.notna()].error.isna().all()
    by_row = dict(zip(refused.index, refused.error))
    assert by_row[0] == "LotArea: expected a number (got 'abc')"
    assert by_row[1] == "LotArea: expected a number, got bool (got True)"
    assert by_row[5] == f"LotArea: {TOO_LARGE} (got inf)"
    assert by_row[15] == "Street: is missing, but this column must have a value"
    assert by_row[25] == f"Id: {ID_EXPECTED} (got 'x')"
    scored = out[out.SalePrice.notna()]
    assert "Neighborhood: category 'Atlantis' was not seen in training" in scored.warnings[19]
    assert "Extra: is not a field of the model: ignored" in scored.warnings[29]
    assert len(out) == len(corrupted(test_records))  # nothing dropped


def test_empty_input(predictor):
    assert len(predictor.predict([])) == 0
    assert len(predictor.predict(pd.DataFrame())) == 0


TEXT_CASES = {  # text a CSV cell can hold, in a numeric column, a categorical one and the id column
    "LotArea": ["abc", "inf", "-inf", "nan", "NaN", "1e3", "8450.5", " 12", "12 ", "+5", "-0", "1e500", "1e-400", "0x10", "1_000", "１２", "3.4e38", "3.5e38"],
    "Neighborhood": ["Atlantis", " NAmes", "names", "Ünïcødé"],
    "Id": ["x", "3.5", " 7", "007", "+7", "-3", "9223372036854775807", "9223372036854775808", "1e3", "7.0"],
}


def text_table(path, na_strings=("NA", "")):
    "A CSV file as the batch reader reads it: every column as text, `na_strings` as missing."
    import pyarrow as pa
    from nbprod.batch import read_chunks
    return pa.concat_tables(read_chunks(path, chunk_size=100_000)[1])


@pytest.mark.parametrize("which", ["test.csv", "corrupted"])
def test_arrow_and_pandas_checks_agree_on_text(predictor, settings, tmp_path, which):
    from nbprod.predict import check_table
    path = settings.test_csv
    if which == "corrupted":
        raw = pd.read_csv(settings.test_csv, dtype=str, keep_default_na=False).head(1)
        rows = [raw.iloc[0].to_dict() | {col: v} for col, values in TEXT_CASES.items() for v in values]
        rows += [raw.iloc[0].to_dict() | {"LotArea": ""}, raw.iloc[0].to_dict() | {"Neighborhood": "NA"}]
        pd.DataFrame(rows).to_csv(path := tmp_path / "corrupted.csv", index=False)
    table = text_table(path)
    frame = read_raw_csv(path)
    cols, ids, ok1, i1 = check_table(table, predictor.contract, predictor._fast.categories)
    canon, ok2, i2 = check_rows(frame, predictor.contract, known=known_categories(predictor.contract))
    assert ok1.tolist() == ok2.tolist()
    pd.testing.assert_frame_equal(sorted_issues(i1), sorted_issues(i2))
    assert ids.tolist() == canon.Id.tolist()
    for f in predictor.contract.fields:  # the same values: numbers to the bit, categories as codes of the same strings
        if f.kind == "numeric": assert np.array_equal(cols[f.name][ok1], canon[f.name].to_numpy()[ok1], equal_nan=True), f.name
        else:
            cats = predictor._fast.categories[f.name]
            strings = canon[f.name].to_numpy(dtype=object, na_value=None)
            expected = [-1 if s is None else (cats.get_loc(s) if s in cats else len(cats)) for s in strings]
            assert cols[f.name][ok1].tolist() == np.array(expected)[ok1].tolist(), f.name
    a, b = predictor.score_table(table), predictor.score(frame)
    assert np.array_equal(a.predictions, b.predictions, equal_nan=True)
    pd.testing.assert_frame_equal(a.frame(), b.frame())
