"""`runs compare` on real runs of the training job: a deliberately worse model is found worse, the same model with another
seed is not found different, runs that held out other rows are refused unless told."""
import pytest
from nbprod.compare import compare_runs

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


def test_cross_validation_on_the_same_folds_compares_the_recipes(runs):
    r = house_prices_cli("runs", "compare", runs["worse"], runs["base"], "--cv", "3", "--repeats", "1")
    assert r.returncode == 0, r.stderr
    assert "1460 rows, 1 x 3-fold cross-validation on the same folds" in r.stdout and "verdict: B is better" in r.stdout


def test_runs_that_held_out_other_rows_are_refused_unless_told(train_job, runs):
    other = train_job("a", split_seed=1)
    with pytest.raises(ValueError, match="held out different rows"):
        compare_runs(runs["base"], other)
    shared = compare_runs(runs["base"], other, allow_different_data=True)
    assert 2 <= shared.rows < 146  # the held-out rows both runs happen to share


def test_the_command_prints_the_differences_and_the_verdict(runs, tmp_path):
    r = house_prices_cli("runs", "compare", runs["base"], runs["worse"], "--report", tmp_path / "compare.html")
    assert r.returncode == 0, r.stderr
    assert "parameters.gbm_n_estimators" in r.stdout and "verdict: B is worse" in r.stdout and "95% interval" in r.stdout
    page = (tmp_path / "compare.html").read_text()
    assert "<img alt='B - A over the resamples' src='data:image/png;base64," in page and "B is worse" in page


@pytest.fixture()
def store(runs, tmp_path):
    "A run store of its own holding copies of the runs (promotion writes aliases.json and promotions.jsonl into it)."
    import shutil
    store = tmp_path / "root" / "runs"  # a project root of its own, for commands that take the project's run store
    for name in ("base", "worse", "seed1"): shutil.copytree(runs[name], store / runs[name].name)
    return store


def test_promotion_passes_a_gate_and_every_change_is_logged(runs, store):
    from nbprod.compare import PromotionRefused, promote, promotions
    from nbprod.runs import read_aliases, resolve_run
    base, worse, seed1 = (runs[k].name for k in ("base", "worse", "seed1"))
    first = promote(base, "production", store)
    assert (first.kind, first.previous, first.comparison, first.forced) == ("promotion", None, None, False)
    with pytest.raises(PromotionRefused, match=f"worse than {base}"):
        promote(worse, "production", store)
    with pytest.raises(ValueError, match="needs a reason"):
        promote(worse, "production", store, force=True)
    assert read_aliases(store) == {"production": base}  # a refused promotion changes nothing
    same = promote(seed1, "production", store)  # another seed of the same model: no detectable difference, so not worse
    assert same.comparison.verdict == "no detectable difference" and same.previous == base and not same.forced
    forced = promote(worse, "production", store, reason="an experiment", force=True)
    assert forced.forced and "worse than" in forced.objections[0] and forced.reason == "an experiment"
    back = promote(seed1, "production", store)  # it held production before: a rollback, through the same gate
    assert back.kind == "rollback" and back.previous == worse
    promote(worse, "staging", store)
    assert read_aliases(store) == {"production": seed1, "staging": worse}
    assert [(p.alias, p.run, p.kind) for p in promotions(store)] == [
        ("production", base, "promotion"), ("production", seed1, "promotion"), ("production", worse, "promotion"),
        ("production", seed1, "rollback"), ("staging", worse, "promotion")]
    assert resolve_run(None, store).name == seed1 and resolve_run("staging", store).name == worse


def test_commands_take_the_production_run_and_list_aliases(runs, store, settings, tmp_path):
    seed1 = runs["seed1"].name
    r = house_prices_cli("runs", "--runs-dir", store, "promote", seed1, "--alias", "production")
    assert r.returncode == 0 and f"promotion: {seed1} holds 'production'" in r.stdout, r.stderr
    r = house_prices_cli("runs", "--runs-dir", store, "promote", runs["worse"].name)
    assert r.returncode == 1 and "is not promoted to 'production'" in r.stderr and "--force" in r.stderr
    listing = house_prices_cli("runs", "--runs-dir", store, "list").stdout
    assert next(line for line in listing.splitlines() if line.startswith(seed1)).endswith("production")
    env = {"HOUSE_PRICES_ROOT": str(store.parent)}  # no --run: the run that holds production
    r = house_prices_cli("predict", "--no-progress", settings.test_csv, "-o", tmp_path / "out.csv", env=env)
    assert r.returncode == 0 and "no run is promoted" not in r.stderr, r.stderr
    scored = house_prices_cli("predict", "--no-progress", "--run", seed1, settings.test_csv, "-o", tmp_path / "seed1.csv", env=env)
    assert scored.returncode == 0 and (tmp_path / "out.csv").read_bytes() == (tmp_path / "seed1.csv").read_bytes()


def test_a_project_gate_can_require_that_the_run_reproduces(runs, store):
    from nbprod.compare import promote
    from nbprod.project import Gate
    p = promote(runs["worse"].name, "staging", store, gate=Gate(reproduces=True))
    assert not p.objections and any(c.startswith("reproduces: reproduced") for c in p.checked), p.checked

