"""A declared hyperparameter search run by the real training job, here and on a real local Dask cluster of two worker processes:
the same candidates, scores, choice and predictions; a worker with other library versions refused."""
import pytest
from nbprod.environment import package_versions, shaping_packages
from nbprod.job import JobError, run_training
from nbprod.manifest import Manifest
from nbprod.runs import MANIFEST, NOTEBOOK, read_predictions
from nbprod.search import cluster_versions

SMALL = dict(search="random", search_iter=3, search_folds=2, gbm_n_estimators=100)  # three candidates of the project's space, quick fits


def test_a_search_on_dask_scores_and_chooses_as_the_local_one(train_job):
    local, dask = (Manifest.read(train_job(**SMALL, engine=e) / MANIFEST) for e in ("local", "dask"))
    a, b = local.search, dask.search
    assert a is not None and len(a.candidates) == 3 and all(len(c.scores) == 2 for c in a.candidates)
    assert a.candidates == b.candidates and a.best == b.best  # every fold's score, to the bit
    assert {k: local.model.hyperparameters[k] for k in a.best} == a.best  # the job trained with the chosen candidate
    assert local.model.fitted.sha256 == dask.model.fitted.sha256
    assert read_predictions(train_job(**SMALL, engine="local")).equals(read_predictions(train_job(**SMALL, engine="dask")))
    assert (a.engine, b.engine, a.cluster) == ("local", "dask", None)
    assert b.cluster["workers"] >= 1 and b.cluster["versions"] == package_versions(shaping_packages())
    assert dask.parameters["engine"] == "dask" and dask.parameters["search"] == "random"
    for e in ("local", "dask"):  # the report shows the search's progress bar run to its end: 3 candidates x 2 folds
        assert "3 candidates x 2 folds: 100%" in (train_job(**SMALL, engine=e) / NOTEBOOK).read_text() and "6/6" in (train_job(**SMALL, engine=e) / NOTEBOOK).read_text()


def test_an_unknown_search_is_refused_with_the_choices(settings, runs_dir):
    from dataclasses import replace
    with pytest.raises(JobError, match="search must be one of grid, random, got 'best'"):
        run_training(dict(search="best"), settings=replace(settings, runs_dir=runs_dir), progress=False)


class FakeClient:
    "What `cluster_versions` asks of a Dask client, with one worker whose scikit-learn differs."
    scheduler = type("S", (), {"address": "tcp://10.1.2.3:8786"})()
    def get_versions(self, check): pass
    def run(self, fn, names):
        here = fn(names)
        return {"tcp://10.1.2.4:1": here, "tcp://10.1.2.5:1": {**here, "scikit-learn": "1.5.0"}}


def test_a_worker_with_other_library_versions_is_refused():
    with pytest.raises(RuntimeError, match=r"tcp://10.1.2.5:1: scikit-learn 1.5.0 \(here 1\.9"):
        cluster_versions(FakeClient())
