"""`runs compare` on real runs of the training job: a deliberately worse model is found worse, the same model with another
seed is not found different, runs that held out other rows are refused unless told."""
import pytest

from house_prices.core.compare import compare_runs

from conftest import house_prices_cli


@pytest.fixture(scope="module")
def runs(train_job):
    return dict(base=train_job("a"), worse=train_job("a", gbm_n_estimators=20), seed1=train_job("a", seed=1))


def test_a_far_weaker_model_is_worse_and_another_seed_is_no_different(runs):
    worse = compare_runs(runs["base"], runs["worse"])
    assert worse.verdict == "B is worse" and worse.metric == "rmse_log" and worse.rows == 146
    assert worse.value_b > worse.value_a and 0 < worse.low <= worse.difference <= worse.high
    assert compare_runs(runs["worse"], runs["base"]).verdict == "B is better"
    seed = compare_runs(runs["base"], runs["seed1"])
    assert seed.verdict == "no detectable difference" and seed.low < 0 < seed.high
    assert compare_runs(runs["base"], runs["seed1"]) == seed  # seeded: the same interval again


def test_runs_that_held_out_other_rows_are_refused_unless_told(train_job, runs):
    other = train_job("a", split_seed=1)
    with pytest.raises(ValueError, match="held out different rows"):
        compare_runs(runs["base"], other)
    shared = compare_runs(runs["base"], other, allow_different_data=True)
    assert 2 <= shared.rows < 146  # the held-out rows both runs happen to share


def test_the_command_prints_the_differences_and_the_verdict(runs, tmp_path):
    r = house_prices_cli("runs", "compare", runs["base"], runs["worse"])
    assert r.returncode == 0, r.stderr
    assert "parameters.gbm_n_estimators" in r.stdout and "verdict: B is worse" in r.stdout and "95% interval" in r.stdout
