"""`runs compare` and promotion on real toy runs: a far more regularised model is found worse, a recipe of about the
same skill is not found different, runs that held out other rows are refused unless told, and the promotion gate lets
through what it should, logging every change."""
import shutil

import pytest

from nbprod.compare import PromotionRefused, compare_runs, promote, promotions
from nbprod.project import Gate
from nbprod.runs import read_aliases, read_predictions, resolve_run
from nbprod.toy import toy_project, toy_rows

from toys import cli


@pytest.fixture(scope="module")
def runs(toy_run):
    return dict(base=toy_run(), worse=toy_run(alpha=300.0), near=toy_run(alpha=1.5))


def test_a_far_weaker_model_is_worse_and_a_near_one_is_no_different(runs):
    worse = compare_runs(runs["base"], runs["worse"])
    assert worse.verdict == "B is worse" and worse.metric == "rmse" and worse.rows == 20
    assert worse.value_b > worse.value_a and 0 < worse.low <= worse.difference <= worse.high
    assert compare_runs(runs["worse"], runs["base"]).verdict == "B is better"
    near = compare_runs(runs["base"], runs["near"])
    assert near.verdict == "no detectable difference" and near.low < 0 < near.high
    assert compare_runs(runs["base"], runs["near"]) == near  # seeded: the same interval again


def test_cross_validation_on_the_same_folds_compares_the_recipes(runs):
    r = cli("runs", "compare", runs["worse"], runs["base"], "--cv", "3", "--repeats", "1")
    assert r.returncode == 0, r.stderr
    assert "200 rows, 1 x 3-fold cross-validation on the same folds" in r.stdout and "verdict: B is better" in r.stdout


def test_runs_that_held_out_other_rows_are_refused_unless_told(toy_run, runs):
    other = toy_run(seed=1)
    with pytest.raises(ValueError, match="held out different rows"):
        compare_runs(runs["base"], other)
    # the held-out rows both happen to share
    both = len(set(read_predictions(runs["base"]).key) & set(read_predictions(other).key))
    if both < 2:
        with pytest.raises(ValueError, match=f"share {both} held-out row"):
            compare_runs(runs["base"], other, allow_different_data=True)
    else: assert compare_runs(runs["base"], other, allow_different_data=True).rows == both < 20
    assert compare_runs(runs["base"], toy_run(seed=1, test_size=0.5), allow_different_data=True).rows == len(
        set(read_predictions(runs["base"]).key) & set(read_predictions(toy_run(seed=1, test_size=0.5)).key)) >= 2


def test_the_command_prints_the_differences_and_the_verdict(runs, tmp_path):
    r = cli("runs", "compare", runs["base"], runs["worse"], "--report", tmp_path / "compare.html")
    assert r.returncode == 0, r.stderr
    assert "parameters.alpha" in r.stdout and "verdict: B is worse" in r.stdout and "95% interval" in r.stdout
    page = (tmp_path / "compare.html").read_text()
    assert "<img alt='B - A over the resamples' src='data:image/png;base64," in page and "B is worse" in page


@pytest.fixture()
def store(runs, tmp_path):
    "A run store of its own holding copies of the runs (promotion writes aliases.json and promotions.jsonl into it)."
    store = tmp_path / "root" / "runs"  # a project root of its own, for commands that take the project's run store
    for run in runs.values(): shutil.copytree(run, store / run.name)
    return store


def test_promotion_passes_a_gate_and_every_change_is_logged(runs, store):
    base, worse, near = (runs[k].name for k in ("base", "worse", "near"))
    first = promote(base, "production", store)
    assert (first.kind, first.previous, first.comparison, first.forced) == ("promotion", None, None, False)
    with pytest.raises(PromotionRefused, match=f"worse than {base}"):
        promote(worse, "production", store)
    with pytest.raises(ValueError, match="needs a reason"):
        promote(worse, "production", store, force=True)
    assert read_aliases(store) == {"production": base}  # a refused promotion changes nothing
    same = promote(near, "production", store)  # no detectable difference, so not worse
    assert same.comparison.verdict == "no detectable difference" and same.previous == base and not same.forced
    forced = promote(worse, "production", store, reason="an experiment", force=True)
    assert forced.forced and "worse than" in forced.objections[0] and forced.reason == "an experiment"
    back = promote(near, "production", store)  # it held production before: a rollback, through the same gate
    assert back.kind == "rollback" and back.previous == worse
    promote(worse, "staging", store)
    assert read_aliases(store) == {"production": near, "staging": worse}
    assert [(p.alias, p.run, p.kind) for p in promotions(store)] == [
        ("production", base, "promotion"), ("production", near, "promotion"), ("production", worse, "promotion"),
        ("production", near, "rollback"), ("staging", worse, "promotion")]
    assert resolve_run(None, store).name == near and resolve_run("staging", store).name == worse


def test_commands_take_the_production_run_and_list_aliases(runs, store, tmp_path):
    near = runs["near"].name
    toy_rows(50, seed=5, target=False, start=5001).to_csv(tmp_path / "new.csv", index=False)
    r = cli("runs", "--runs-dir", store, "promote", near, "--alias", "production")
    assert r.returncode == 0 and f"promotion: {near} holds 'production'" in r.stdout, r.stderr
    r = cli("runs", "--runs-dir", store, "promote", runs["worse"].name)
    assert r.returncode == 1 and "is not promoted to 'production'" in r.stderr and "--force" in r.stderr
    listing = cli("runs", "--runs-dir", store, "list").stdout
    assert next(line for line in listing.splitlines() if line.startswith(near)).endswith("production")
    env = {toy_project().root_env_var: str(store.parent)}  # no --run: the run that holds production
    r = cli("predict", "--no-progress", tmp_path / "new.csv", "-o", tmp_path / "out.csv", env=env)
    assert r.returncode == 0 and "no run is promoted" not in r.stderr, r.stderr
    scored = cli("predict", "--no-progress", "--run", near, tmp_path / "new.csv", "-o", tmp_path / "near.csv", env=env)
    assert scored.returncode == 0 and (tmp_path / "out.csv").read_bytes() == (tmp_path / "near.csv").read_bytes()


def test_a_project_gate_can_require_that_the_run_reproduces(runs, store):
    p = promote(runs["worse"].name, "staging", store, gate=Gate(reproduces=True))
    assert not p.objections and any(c.startswith("reproduces: reproduced") for c in p.checked), p.checked


def test_the_store_as_a_frame_holds_every_run_its_aliases_parameters_and_metrics(runs, store):
    import nbprod
    from nbprod.runs import runs_frame
    promote(runs["base"].name, "production", store)
    frame = runs_frame(store).set_index("run_id")
    assert sorted(frame.index) == sorted(r.name for r in runs.values()) and (frame.status == "complete").all()
    assert frame.loc[runs["base"].name, "aliases"] == "production"
    assert frame["params.alpha"].to_dict() == {runs["base"].name: 1.0, runs["worse"].name: 300.0,
                                               runs["near"].name: 1.5}
    rmse = frame["metrics.rmse"]
    assert (rmse > 0).all() and rmse[runs["worse"].name] == rmse.max()
    assert (frame.nbprod == nbprod.__version__).all() and (frame.duration_s > 0).all()
    assert str(frame.started.dt.tz) == "UTC" and frame.fingerprint.nunique() == 1
    assert (frame.data_status == "only while data/toy.csv is unchanged").all()  # copies: their snapshots stayed behind
