"""The example's own pipeline (with its DerivedFeatures step) compiles, and the compiled function gives scikit-learn's bits on every row
of train.csv and test.csv: all at once, 50 at a time and one by one."""
import numpy as np
from nbprod.config import get_settings
from nbprod.fastpath import compile_pipeline, frame_columns
from nbprod.train import fit

from house_prices.data import FEATURES, read_csv


def test_the_example_pipeline_compiles_to_the_same_bits():
    s = get_settings()
    train, test = read_csv(s.data_file), read_csv(s.scoring_file, target=False)
    pipe = fit(train, {"gbm_n_estimators": 30})
    fast = compile_pipeline(pipe)
    for df in (train, test):
        cols, expected = frame_columns(df[FEATURES]), pipe.predict(df[FEATURES])
        assert (fast(cols, len(df)) == expected).all()
        chunks = [fast({k: v[i:i + 50] for k, v in cols.items()}, len(df[i:i + 50])) for i in range(0, len(df), 50)]
        assert (np.concatenate(chunks) == expected).all()
    for i in (0, 5, 700):
        one = test.iloc[[i]][FEATURES]
        assert fast(frame_columns(one), 1).tolist() == pipe.predict(one).tolist()


def test_without_numba_the_trees_and_one_hot_columns_give_the_same_bits(monkeypatch, caplog):
    "Numba missing (or refusing a NumPy it does not know yet): a warning says so, and scikit-learn's `predict_stages` and NumPy give the same bits."
    import sys

    from nbprod import fastpath
    s = get_settings()
    train, test = read_csv(s.data_file), read_csv(s.scoring_file, target=False)
    pipe = fit(train, {"gbm_n_estimators": 30})
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    with caplog.at_level("WARNING", logger="nbprod.fastpath"):
        assert fastpath._numba.__wrapped__() is None
    assert "Numba cannot be imported" in caplog.text and "scikit-learn's loop" in caplog.text
    monkeypatch.setattr(fastpath, "_compiled", lambda f: None)
    fast = compile_pipeline(pipe)
    for rows in (test.iloc[:1], test.iloc[:9], test):
        assert (fast(frame_columns(rows[FEATURES]), len(rows)) == pipe.predict(rows[FEATURES])).all()
