"""Every gate family can fail: a deliberately bad model (or drifted data) per family, gated for real.

Each scenario saves a model in MLflow's format and runs the gates on it (`pytest model_tests
-m gates --model-uri DIR --env staging ...` in this process through `pytest.main`, as the CLI
runs them: conftest's run_gates_in_process), then reads the evidence JSON and the JUnit XML: exactly the expected gates of
the expected family failed, every other required gate passed, pytest exited 1, and each
failure message carries the figure, the threshold and the environment. The gates load the
bad models back from skops, which rebuilds their classes from the module `bad_models`, so
the run has this folder on sys.path.

The good parts of every bad model are the configured model itself (the wrappers in
bad_models.py delegate to it), so staging's thresholds stay as they are, with two
exceptions, each explained where it is made: Durbin-Watson for the constant model, and
the latency bounds in every scenario but the latency one (conftest's `SHARED_MACHINE`).

Cost: the configured model is fitted once for the module, and every run uses conftest's
cheap gate settings (`CHEAP`: the fewest latency rounds the config allows, fewer bootstrap
resamples and refit rows).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bad_models as bm
import pytest
from threadpoolctl import threadpool_limits

from conftest import CHEAP, NEEDS_CHAMPION, SHARED_MACHINE, GateRun, deep_merge, run_gates_in_process, write_project
from pipeline import catalogue, figures, registry, train
from pipeline import config as config_mod
from pipeline import data as data_mod
from pipeline.config import fmt_number

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parent
ENV = "staging"
# The standard families but serving (its server is started only where a serving gate is required).
FAMILIES = {f: {s.id for s in catalogue.standard("regression") if s.family == f} for f in catalogue.STANDARD_FAMILIES if f != "serving"}
# Latency is judged at staging's bounds in its own scenario. Elsewhere its gates still run and
# must pass, but against SHARED_MACHINE's loose bounds: these runs share a small machine with
# each other and with whatever else runs there, and one scheduling hiccup among 20 single-row
# calls (seen: p99 211 ms at a p50 of 42 ms) would fail a scenario that is about something else.


# ---------------------------------------------------------------- the configured model, once


@dataclass
class Ames:
    """The configured model fitted once on the Ames training split, shared by every scenario."""

    settings: config_mod.Settings
    dataset: data_mod.Dataset
    split: data_mod.Split
    model: Any  # the configured pipeline, fitted
    folder: Path

    @property
    def features(self) -> list[str]:
        return self.dataset.features.columns

    @property
    def X_train(self):
        return self.split.train[self.features]

    @property
    def y_train(self):
        return self.split.train[self.dataset.target]

    @property
    def X_eval(self):
        return self.split.eval[self.features]

    def unfitted(self):
        return train.build(self.settings, self.dataset.features)

    def save(self, model: Any, folder: Path) -> Path:
        path = folder / "model"
        registry.save_model(model, self.dataset.features, path)
        return path

    @functools.cached_property
    def good_model_dir(self) -> Path:
        """The configured model saved as `log_candidate` logs it: it passes every staging gate."""
        return self.save(self.model, self.folder)


@pytest.fixture(scope="module")
def ames(tmp_path_factory) -> Ames:
    folder = tmp_path_factory.mktemp("ames")
    settings = config_mod.load(write_project(folder / "project"), ENV)
    dataset = data_mod.load(settings)
    split = data_mod.split(settings, dataset)
    with threadpool_limits(1):  # as the gate runs (gate_env): OpenMP threads on a busy small machine cost minutes
        model = train.fit(settings, dataset.features, split.train)
    return Ames(settings, dataset, split, model, folder)


# ---------------------------------------------------------------- gate runs


@dataclass
class Scenario:
    """What a scenario gates: a saved model, config overrides, optionally other evaluation data."""

    model_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_data: Path | None = None
    staging_latency: bool = False  # True: judge latency at staging's bounds (SHARED_MACHINE not applied)
    facts: dict[str, Any] = field(default_factory=dict)  # what the test checks the run against

    def run(self, folder: Path) -> GateRun:
        """Its gate run in `folder`: its own project config (same store as any made there before)."""
        overrides = deep_merge(CHEAP, self.overrides)
        if not self.staging_latency:
            overrides = deep_merge(overrides, SHARED_MACHINE)
        cfg = write_project(folder / "project", overrides)
        extra = ("--eval-data", str(self.eval_data)) if self.eval_data is not None else ()
        return run_gates_in_process(folder / "gates", cfg, *extra, env=ENV, model_uri=str(self.model_dir),
                                    pythonpath=(TESTS_DIR,))


Prepare = Callable[[Ames, Path], Scenario]


def scenario(prepare: Prepare):
    """Mark a test as the checks of the gate run that `prepare` sets up (see `gate_run`)."""

    def mark(test):
        test.prepare = prepare
        return test

    return mark


@pytest.fixture
def gate_run(request, ames, tmp_path) -> tuple[GateRun, dict[str, Any]]:
    """This test's scenario, prepared and gated: the run and the scenario's facts."""
    sc = request.function.prepare(ames, tmp_path)
    return sc.run(tmp_path), sc.facts


def assert_only(run: GateRun, family: str, failed: set[str]) -> dict[str, str]:
    """Exactly `failed` (gates of `family`) failed, every other required gate passed; returns their messages."""
    assert failed <= FAMILIES[family]
    assert run.junit is not None, f"no JUnit XML written (exit {run.returncode}):\n{run.output[-4000:]}"
    gates = run.gates
    required = set(run.evidence["required_gates"])
    # Every family is required at staging and every required gate ran: none hides behind an error.
    for fam, names in FAMILIES.items():
        assert names <= required, f"{fam}: {sorted(names - required)} not required at {ENV}"
    assert required <= set(gates), f"required gates missing from the evidence: {sorted(required - set(gates))}"
    for name in set().union(*FAMILIES.values()):
        assert gates[name]["family"] == next(f for f, n in FAMILIES.items() if name in n)
    # Each required gate recorded its figure under its own id, judged against staging's line for it.
    for name in required:
        threshold = run.figure(name)["threshold"]
        assert threshold["env"] == ENV and threshold["required"] is True, (name, threshold)
    outcomes = run.outcomes
    # No model holds @staging in these stores: the champion gates are not applicable (said, never "passed").
    for name in NEEDS_CHAMPION - failed:
        assert outcomes[name] in ("passed", "not_applicable"), outcomes
    assert {n for n in required if outcomes[n] not in ("passed", "not_applicable")} == failed, f"{outcomes}\n{run.output[-6000:]}"
    assert {n for n in required if outcomes[n] == "not_applicable"} <= NEEDS_CHAMPION, outcomes
    assert all(outcomes[n] == "failed" for n in failed), outcomes
    # Gates this environment does not require (serving, at staging) may skip; none may fail.
    assert all(outcomes[n] in ("passed", "skipped") for n in set(gates) - required), outcomes
    assert run.junit_failed() == failed
    assert run.evidence["status"] == "failed"
    assert run.evidence["environment"] == ENV
    assert run.evidence["reasons"] == [f"gates failed: {', '.join(sorted(failed))}"]
    assert run.returncode == 1, run.output[-4000:]
    messages = {n: gates[n]["message"] for n in failed}
    for name, message in messages.items():
        assert not message.startswith("AssertionError") and message.endswith(f"({ENV})"), f"{name}: {message}"
    return messages


def assert_threshold_in_junit(run: GateRun, gate: str, text: str) -> None:
    """The gate's JUnit properties, keyed by its id, carry its threshold, environment and figure."""
    props = run.junit_properties(gate)
    assert props[f"{gate}.threshold"] == text
    assert props[f"{gate}.env"] == ENV
    assert float(props[f"{gate}.figure"]) == pytest.approx(run.figure(gate)["value"])


# ---------------------------------------------------------------- 1. metrics


def constant_model(ames: Ames, folder: Path) -> Scenario:
    # The configured preprocessing in front of a regressor that always says the training median.
    model = bm.constant_model(ames.model).fit(ames.X_train, ames.y_train)
    overrides = {"environments": {ENV: {"thresholds": {
        # Relaxed, and only here: a constant model's residuals are the (log) prices themselves, and
        # the Ames file lists houses by parcel number, i.e. by location, so neighbouring rows have
        # similar prices and Durbin-Watson lands near 0.9 whatever the model's other faults.
        "residual_autocorrelation": {"min": 0.5, "max": 2.3},
    }}}}
    return Scenario(ames.save(model, folder), overrides, facts={"rows": len(ames.split.eval)})


@scenario(constant_model)
def test_constant_model_fails_the_metric_gates_only(gate_run):
    run, facts = gate_run
    messages = assert_only(run, "metrics", {"r2", "mae", "rmse", "mape"})

    rows = f"{facts['rows']} evaluation rows"

    def against_baseline(gate: str, label: str) -> str:
        fig = run.figure(gate)
        return f"; baseline (the training target's median) {label} {fmt_number(fig['baseline'])}, ratio {fmt_number(fig['ratio_to_baseline'])}"

    mae = run.figure("mae")["value"]
    assert mae > 40_000  # a model that learnt nothing is off by a third of the median price
    # ... and no better than the baseline, which learnt nothing either.
    assert 0.9 < run.figure("mae")["ratio_to_baseline"] < 1.1
    assert messages["mae"] == f"MAE {fmt_number(mae)} > 17,500 USD; {rows}{against_baseline('mae', 'MAE')} ({ENV})"
    r2 = run.figure("r2")["value"]
    assert r2 < 0.05
    assert messages["r2"] == f"R2 {fmt_number(r2)} < 0.88; {rows} ({ENV})"
    rmse = run.figure("rmse")["value"]
    assert messages["rmse"] == f"RMSE {fmt_number(rmse)} > 27,500 USD; {rows}{against_baseline('rmse', 'RMSE')} ({ENV})"
    mape = run.figure("mape")["value"]
    assert messages["mape"] == f"MAPE {fmt_number(mape)} > 12%; {rows}{against_baseline('mape', 'MAPE')} ({ENV})"
    # The relaxed Durbin-Watson line is the one judged, and it held.
    assert run.figure("residual_autocorrelation")["threshold"]["text"] == "in [0.5, 2.3]"
    assert_threshold_in_junit(run, "mae", "<= 17,500 USD")


# ---------------------------------------------------------------- 2. determinism


def unseeded_fit(ames: Ames, folder: Path) -> Scenario:
    # Its refits jitter the target with the unseeded global RNG. The candidate itself is the
    # configured model's fit (a jitter of zero), so every other gate sees the configured model.
    model = bm.UnseededFit(ames.unfitted(), jitter=1e-3).adopt(ames.model, ames.X_train)
    return Scenario(ames.save(model, folder), facts={"refit_rows": CHEAP["gates"]["determinism"]["refit_rows"]})


@scenario(unseeded_fit)
def test_unseeded_fit_fails_refit_identical_only(gate_run):
    run, facts = gate_run
    messages = assert_only(run, "determinism", {"refit_identical"})

    diff = run.figure("refit_identical")["value"]
    assert diff > 1  # USD: the two refits disagree visibly, not in the last bit
    assert re.fullmatch(
        rf"max prediction difference between two refits {re.escape(fmt_number(diff))} > 0 USD; "
        rf"two refits on {facts['refit_rows']} rows with the same seed, compared on \d+ rows \({ENV}\)",
        messages["refit_identical"],
    ), messages["refit_identical"]
    assert_threshold_in_junit(run, "refit_identical", "<= 0 USD")


# ---------------------------------------------------------------- 3. latency


# 300 ms per call: beyond staging's 100 ms, and beyond its 50x the reference workload (~3 ms of
# CPU here) over the whole interval. At 150 ms a machine whose reference took 3.2 ms put the
# multiple's interval across 50x ([49.4, 50.7]), and the gate rightly judged the ms bound alone.
SLOW_DELAY_S = 0.3


def slow_model(ames: Ames, folder: Path) -> Scenario:
    model = bm.SlowPredict(ames.unfitted(), delay_s=SLOW_DELAY_S).adopt(ames.model, ames.X_train)
    # The fewest rounds (CHEAP) and a small batch keep the sleeping bounded; with 300 ms per
    # call a 100-row batch is far below the throughput bound too: the same fault.
    return Scenario(ames.save(model, folder), {"gates": {"latency": {"batch_rows": 100}}}, staging_latency=True,
                    facts={"rounds": CHEAP["gates"]["latency"]["single_row_rounds"]})


@scenario(slow_model)
def test_slow_model_fails_the_latency_gates_only(gate_run):
    run, facts = gate_run
    messages = assert_only(run, "latency", {"single_row_latency", "batch_throughput"})

    p99 = run.figure("single_row_latency")["value"]
    assert p99 >= SLOW_DELAY_S * 1000
    num = r"[\d,.]+"
    unwaited = rf"( without the waiting for a core \[{num}, {num}\],)?"  # named where the run waited for a core (1 % or more)
    # Too slow in milliseconds and in reference units, each over its whole interval.
    # Too slow in reference units too where the reference workload is fast enough for 300 ms
    # to be beyond 50 of it (~2 ms on an idle core of most machines here; ~11 ms on some,
    # where 300 ms is ~27x and that bound holds): the clause is there exactly when it fails.
    ratio = float(re.search(r"p99 ([\d.]+)x the reference; waited", messages["single_row_latency"]).group(1))
    in_units = rf"single-row p99 {num}x the reference, interval \[{num}, {num}\],{unwaited} beyond <= 50x; "
    if ratio > 60:
        in_units = f"({in_units})"
    elif ratio < 40:
        in_units = ""
    else:  # near the bound, the interval decides
        in_units = f"({in_units})?"
    assert re.fullmatch(
        rf"single-row p99 {re.escape(fmt_number(p99))} ms, interval \[{num}, {num}\],{unwaited} beyond <= 100 ms; "
        + in_units +
        rf"p50 [\d.]+ ms over {facts['rounds']} single-row predicts; p99 [\d.]+x the reference; waited for a core \d+% of the time; "
        rf"reference workload CPU p50 [\d.]+ ms, wall/CPU p90 [\d.]+; intervals at 95% \({ENV}\)",
        messages["single_row_latency"],
    ), messages["single_row_latency"]
    # The median beside the p99 is reported, not judged.
    assert run.gates["single_row_latency"]["reported"]["single_row_p50_ms"] >= SLOW_DELAY_S * 1000
    rate = run.figure("batch_throughput")["value"]
    assert rate < 100 / SLOW_DELAY_S
    assert re.fullmatch(
        rf"batch throughput {re.escape(fmt_number(rate))} rows/s, interval \[{num}, {num}\],{unwaited} beyond >= 5,000 rows/s; "
        rf"median [\d.]+ ms per 100-row batch over 5 batches; waited for a core \d+% of the time; "
        rf"reference workload CPU p50 [\d.]+ ms, wall/CPU p90 [\d.]+; "
        rf"interval at 95% \({ENV}\)",
        messages["batch_throughput"],
    ), messages["batch_throughput"]
    assert_threshold_in_junit(run, "single_row_latency", "<= 100 ms and <= 50x reference")
    assert_threshold_in_junit(run, "batch_throughput", ">= 5,000 rows/s")


# ---------------------------------------------------------------- 4. robustness: missing values


def refuses_missing(ames: Ames, folder: Path) -> Scenario:
    # The evaluation rows have no missing value in the numeric columns, so only injected ones hit.
    model = bm.RefusesMissing(ames.unfitted()).adopt(ames.model, ames.X_train)
    assert ames.features[0] in model.complete_columns_
    return Scenario(ames.save(model, folder), facts={"first": ames.features[0], "rows": ames.settings.gates.robustness.rows_per_example})


@scenario(refuses_missing)
def test_model_refusing_missing_values_fails_missing_values_only(gate_run):
    run, facts = gate_run
    messages = assert_only(run, "robustness", {"missing_values"})

    first, rows = facts["first"], facts["rows"]
    # Hypothesis's shrunk, minimal failing spec is in the message: one column (the first
    # feature: sampled_from shrinks to the front), row sample seed 0.
    spec = rf"MaskSpec\(sample=RowSample\(seed=0, rows={rows}\), columns=\('{first}',\), share=[\d.]+\)"
    refusal = rf"predict raised ValueError: Input X contains NaN in column '{first}', which had no missing value at fit time"
    assert re.fullmatch(rf"non-finite predictions {rows} > 0 rows; minimal failing example; {refusal}; {spec} \({ENV}\)",
                        messages["missing_values"]), (
        messages["missing_values"])
    # The evidence keeps that minimal failing example's figure.
    figure = run.figure("missing_values")
    assert figure["value"] == rows
    assert re.fullmatch(rf"minimal failing example; {refusal}; {spec}", figure["detail"]), figure["detail"]
    assert_threshold_in_junit(run, "missing_values", "<= 0 rows")


# ---------------------------------------------------------------- 5. robustness: directional


def marks_down_large_houses(ames: Ames, folder: Path) -> Scenario:
    # Above 2,500 sq ft the prediction scales by (area / 2,500) ** -0.5: 10 % more area, ~4.7 %
    # less price. 5 % of the evaluation houses are that large: the metrics barely move.
    model = bm.ShrinksAboveKnee(ames.unfitted(), feature="Gr_Liv_Area", knee=2500, power=0.5).adopt(ames.model, ames.X_train)
    return Scenario(ames.save(model, folder))


@scenario(marks_down_large_houses)  # hypothesis shrinks its failure over ~110 examples of 2 predicts
def test_model_marking_down_large_houses_fails_directional_only(gate_run):
    run, _ = gate_run
    messages = assert_only(run, "robustness", {"directional"})

    # The message is hypothesis's shrunk minimal example, and the evidence keeps that example's figure.
    figure = run.figure("directional")
    drop = figure["value"]
    spec = r"ShiftSpec\(sample=RowSample\(seed=0, rows=\d+\), feature='Gr_Liv_Area', step=[\d.e-]+\)"
    assert re.fullmatch(
        rf"prediction drop against increasing Gr_Liv_Area {re.escape(fmt_number(drop))} > 0\.01; minimal failing example; {spec} \({ENV}\)",
        messages["directional"],
    ), messages["directional"]
    assert re.fullmatch(rf"minimal failing example; {spec}", figure["detail"]), figure["detail"]
    assert 0.01 < drop < 0.05  # at most ~4.7 % for 10 % more area, as made
    assert_threshold_in_junit(run, "directional", "<= 0.01")


# ---------------------------------------------------------------- 6. data drift


def sold_in_2010(ames: Ames, folder: Path) -> Scenario:
    # The held-out rows as the file has them, all sold in 2010 (a later batch of sales, say):
    # 89 % of the training sales are from 2006-2009. The configured model barely uses the
    # sale year, so its metrics, slices and residuals on these rows still pass.
    raw = data_mod.read_csv(ames.settings.data.path)
    drifted = raw.loc[ames.split.eval.index].copy()
    drifted["Year_Sold"] = 2010
    eval_csv = folder / "eval-2010.csv"
    drifted.to_csv(eval_csv, index=False)
    facts = {"share_before_2010": float((ames.split.train["Year_Sold"] < 2010).mean()),
             "split_digest": data_mod.frame_digest(ames.split.eval)}
    return Scenario(ames.good_model_dir, eval_data=eval_csv, facts=facts)


@scenario(sold_in_2010)
def test_drifted_evaluation_data_fails_feature_drift_only(gate_run):
    run, facts = gate_run
    messages = assert_only(run, "data", {"feature_drift"})

    drift = run.figure("feature_drift")
    # The KS statistic against a point mass at the top of the range: the share of training rows below it.
    assert drift["value"] == pytest.approx(facts["share_before_2010"])
    assert drift["label"] == "drift of Year_Sold"
    assert drift["detail"].startswith("worst column Year_Sold ")
    assert re.fullmatch(
        rf"drift of Year_Sold {re.escape(fmt_number(drift['value']))} > 0\.2; "
        rf"worst column Year_Sold \(p=[^)]+\); \d+ columns compared \({ENV}\)",
        messages["feature_drift"],
    ), messages["feature_drift"]
    assert run.evidence["eval_data_sha256"] not in (None, facts["split_digest"])
    assert_threshold_in_junit(run, "feature_drift", "<= 0.2")


# ---------------------------------------------------------------- 7. champion, slices, residuals


def champion_saw_the_evaluation_rows(ames: Ames, folder: Path) -> Scenario:
    # The champion holding @staging has seen the evaluation rows (fitted on every row), so on
    # them it is far better than any honest candidate: the configured model, which passes the
    # rest, is then confidently more than 5 % worse.
    settings = config_mod.load(write_project(folder / "project"), ENV)  # the run rewrites it, same store
    with threadpool_limits(1):
        champion = train.fit(settings, ames.dataset.features, ames.dataset.frame)
    metrics = figures.regression_metrics(ames.split.eval[ames.dataset.target], champion.predict(ames.X_eval))
    logged = registry.log_candidate(settings, champion, ames.dataset, ames.split.eval, metrics)
    registry.connect(settings).set_registered_model_alias(logged.name, settings.environment.alias, logged.version)
    facts = {"name": logged.name, "version": logged.version, "rows": len(ames.split.eval)}
    return Scenario(ames.good_model_dir, facts=facts)


@scenario(champion_saw_the_evaluation_rows)
def test_candidate_far_worse_than_the_champion_fails_champion_only(gate_run):
    run, facts = gate_run
    messages = assert_only(run, "champion", {"champion_mae"})

    gate = run.gates["champion_mae"]
    upper = run.figure("champion_mae")["value"]  # non-inferiority: the upper bound is judged
    reported = gate["reported"]
    assert reported["champion_mae_lower"] > 0.5
    assert reported["champion_mae_lower"] < reported["champion_mae_change"] < upper == reported["champion_mae_upper"]
    assert re.fullmatch(
        rf"MAE change vs champion, upper bound {re.escape(fmt_number(upper))} > 0\.05; "
        rf"non-inferiority vs {facts['name']} v{facts['version']} @{ENV}: MAE change \+[\d.]+%, 95% one-sided bounds "
        rf"\[\+[\d.]+%, \+[\d.]+%\] on {facts['rows']} rows \({ENV}\)",
        messages["champion_mae"],
    ), messages["champion_mae"]
    assert_threshold_in_junit(run, "champion_mae", "<= 0.05")


def test_worse_noisy_candidate_is_refused_at_production_and_passed_by_not_confidently_worse(ames, tmp_path):
    """Production's champion gate is a non-inferiority test. The candidate is the champion with 2 %
    noise on each prediction: about 3 % worse on average (point change), though not *confidently*
    worse than production's 2 % margin (lower bound under it). Non-inferiority refuses it (the
    upper bound is over the margin); the old superiority-of-the-wrong-sign test, chosen
    explicitly, passes it and says which test it ran."""
    settings = config_mod.load(write_project(tmp_path / "project"), "production")
    champion = registry.log_candidate(settings, ames.model, ames.dataset, ames.split.eval,
                                      figures.regression_metrics(ames.split.eval[ames.dataset.target], ames.model.predict(ames.X_eval)))
    registry.connect(settings).set_registered_model_alias(champion.name, settings.environment.alias, champion.version)
    noisy = ames.save(bm.NoisyCopy(ames.unfitted(), sd=0.02).adopt(ames.model, ames.X_train), tmp_path)

    def champion_gate(test: str) -> GateRun:
        cfg = write_project(tmp_path / "project", deep_merge(CHEAP, {"gates": {"champion": {"test": test}}}))
        return run_gates_in_process(tmp_path / test, cfg, "-k", "champion_mae", env="production", model_uri=str(noisy),
                                    pythonpath=(TESTS_DIR,))

    refused, passed = champion_gate("non_inferiority"), champion_gate("not_confidently_worse")
    ni, old = refused.gates["champion_mae"], passed.gates["champion_mae"]
    assert ni["reported"] == old["reported"]  # the same bootstrap, judged at its two ends
    change, lower, upper = (ni["reported"][f"champion_mae_{k}"] for k in ("change", "lower", "upper"))
    assert lower < 0.02 < change < upper, ni["reported"]  # worse on average; not confidently worse than the margin
    assert ni["outcome"] == "failed" and refused.returncode == 1
    assert ni["message"].startswith(f"MAE change vs champion, upper bound {fmt_number(upper)} > 0.02; non-inferiority vs ")
    assert ni["message"].endswith("(production)") and f"v{champion.version} @production" in ni["message"]
    assert old["outcome"] == "passed" and old["figure"]["value"] == lower
    assert old["figure"]["detail"].startswith("not-confidently-worse vs ")


def wrong_in_sawyer(ames: Ames, folder: Path) -> Scenario:
    # 20 % too high in Sawyer (32 evaluation rows) and the configured model everywhere else.
    model = bm.WrongInOneSlice(ames.unfitted(), column="Neighborhood", value="Sawyer", factor=1.2).adopt(ames.model, ames.X_train)
    return Scenario(ames.save(model, folder))


@scenario(wrong_in_sawyer)
def test_model_wrong_in_one_neighborhood_fails_slices_only(gate_run):
    run, _ = gate_run
    messages = assert_only(run, "slices", {"slice_error"})

    ratio = run.figure("slice_error")
    assert ratio["value"] > 2.0
    assert re.fullmatch(
        rf"worst slice MAPE / overall MAPE {re.escape(fmt_number(ratio['value']))} > 2; "
        rf"worst slice Neighborhood=Sawyer \(\d+ rows, MAPE [\d.]+, Holm-adjusted p [\d.e-]+\); \d+ slices judged, the smallest of "
        rf"\d+ rows; \d+ with errors larger than the other rows' at Holm-adjusted p < 0\.05 \(one-sided Welch t-tests\)(: .+)? \({ENV}\)",
        messages["slice_error"],
    ), messages["slice_error"]
    assert_threshold_in_junit(run, "slice_error", "<= 2")


def rare_blunders(ames: Ames, folder: Path) -> Scenario:
    # Right on most houses, 60 % too low on about one in 80: on the log scale a few residuals
    # of ~0.9 among ~0.1s, so their distribution is skewed and heavy-tailed, while the errors in
    # USD stay within the metric bounds and no neighbourhood or price band stands out.
    model = bm.RareBlunders(ames.unfitted(), key_columns=ames.dataset.features.categorical, every=80, factor=0.4)
    model.adopt(ames.model, ames.X_train)
    hit = model.hits(ames.X_eval)
    assert 0 < hit.sum() < 0.02 * len(hit)
    return Scenario(ames.save(model, folder))


@scenario(rare_blunders)
def test_model_with_rare_blunders_fails_residual_shape_only(gate_run):
    run, _ = gate_run
    messages = assert_only(run, "residuals", {"residual_skew", "residual_kurtosis"})

    skew = run.figure("residual_skew")["value"]
    kurt = run.figure("residual_kurtosis")["value"]
    assert skew > 1 and kurt > 7
    # A prediction 60 % too low leaves a large positive residual, log(y) - log(p) = 0.92: the
    # signed skew, reported beside the judged |skew|, is positive.
    assert run.gates["residual_skew"]["reported"]["residual_skew_signed"] == pytest.approx(skew)
    assert re.fullmatch(
        rf"\|residual skew\| {re.escape(fmt_number(skew))} > 1; Jarque-Bera p=\S+; \d+ rows \({ENV}\)", messages["residual_skew"]
    ), messages["residual_skew"]
    assert re.fullmatch(
        rf"residual excess kurtosis {re.escape(fmt_number(kurt))} > 7; Jarque-Bera p=\S+; \d+ rows \({ENV}\)",
        messages["residual_kurtosis"],
    ), messages["residual_kurtosis"]
    assert_threshold_in_junit(run, "residual_kurtosis", "<= 7")
