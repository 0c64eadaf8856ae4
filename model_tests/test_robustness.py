"""Robustness gates (hypothesis): perturbation specs drawn by hypothesis, one batched predict each.

A failure shows hypothesis's shrunk minimal spec in the message.
"""

import numpy as np
import pytest
from hypothesis import given

from pipeline import figures
from pipeline import robustness as rb

pytestmark = [pytest.mark.gates, pytest.mark.robustness]


@pytest.fixture(scope="module")
def spread(train_frame, feature_spec):
    """Each numeric feature's training standard deviation: the unit of noise."""
    return train_frame[list(feature_spec.numeric)].std().fillna(0.0)


def _worst(observed):
    return max(observed, key=lambda o: o[0]) if observed else (float("nan"), None)


def _explore(check, observed, record_gate, name, th, detail):
    """Run a hypothesis property and record its figure: the minimal failing example's when
    it fails (hypothesis replays that example last), else the worst example's."""
    try:
        check()
    except BaseException:
        record_gate(name, observed[-1][0] if observed else float("nan"), th, f"minimal failing example; {detail}")
        raise
    record_gate(name, _worst(observed)[0], th, f"worst of {len(observed)} examples; {detail}")


def test_noise_stability(gate_session, eval_predictions, feature_spec, spread, pipeline_settings, thresholds, record_gate):
    cfg, th = pipeline_settings.gates.robustness, thresholds.noise_prediction_change
    observed = []
    frame = eval_predictions.frame

    @given(spec=rb.noise_specs(list(feature_spec.numeric), cfg.rows_per_example, cfg.noise_relative_sd))
    def check(spec):
        # The unperturbed rows' predictions are the session's (batch_independent checks that
        # a row's prediction does not depend on its batch): one predict per example.
        at = spec.sample.positions(len(frame))
        rows = frame.iloc[at]
        change = figures.relative_change(eval_predictions.p[at], gate_session.predict(spec.apply(rows, spread)))
        figure = float(np.percentile(change, cfg.percentile))
        observed.append((figure, float(change.max()), spec))
        assert th.holds(figure), th.explain(f"p{cfg.percentile:g} relative prediction change", figure, f"max {change.max():.3g}; {spec}")

    _explore(check, observed, record_gate, "noise_prediction_change", th,
             f"p{cfg.percentile:g} of rows' relative change; noise sd {cfg.noise_relative_sd} x column sd")
    mx = max(o[1] for o in observed)
    record_gate("max_single_row_change", mx, None, "largest single-row relative change seen (reported, not judged)")


def _nonfinite(gate_session, spec, rows, th, observed) -> None:
    """One example: predict the perturbed rows once; every prediction must be finite."""
    try:
        bad = int((~np.isfinite(gate_session.predict(rows))).sum())
    except Exception as e:  # a model that refuses the input fails the gate, with the reason
        observed.append((len(rows), spec))
        raise AssertionError(th.explain("non-finite predictions", len(rows), f"predict raised {type(e).__name__}: {str(e).splitlines()[0][:150]}; {spec}")) from None
    observed.append((bad, spec))
    assert th.holds(bad), th.explain("non-finite predictions", bad, f"{spec}")


def test_missing_values(gate_session, eval_frame, feature_spec, pipeline_settings, thresholds, record_gate):
    cfg, th = pipeline_settings.gates.robustness, thresholds.nonfinite_predictions
    observed = []

    @given(spec=rb.mask_specs(feature_spec.columns, cfg.rows_per_example))
    def check(spec):
        _nonfinite(gate_session, spec, spec.apply(spec.sample.take(eval_frame)), th, observed)

    _explore(check, observed, record_gate, "nonfinite_predictions", th, "missing values injected")


def test_unseen_categories(gate_session, eval_frame, feature_spec, pipeline_settings, thresholds, record_gate):
    cfg, th = pipeline_settings.gates.robustness, thresholds.nonfinite_predictions
    assert feature_spec.categorical, "no categorical feature to inject unseen categories into"
    observed = []

    @given(spec=rb.unseen_specs(list(feature_spec.categorical), cfg.rows_per_example))
    def check(spec):
        _nonfinite(gate_session, spec, spec.apply(spec.sample.take(eval_frame)), th, observed)

    _explore(check, observed, record_gate, "nonfinite_predictions", th, "unseen categories injected")


def test_column_order(candidate_model, eval_predictions, feature_spec, pipeline_settings, thresholds, record_gate):
    th, rows = thresholds.prediction_difference, pipeline_settings.gates.robustness.rows_per_example
    observed = []
    X = eval_predictions.frame[feature_spec.columns]

    # Each example: a bounded sample of rows with its columns in a drawn order. How the model
    # finds its columns does not depend on how many rows there are.
    @given(sample=rb.row_samples(rows), seed=rb.st.integers(0, 2**31 - 1))
    def check(sample, seed):
        at = sample.positions(len(X))
        order = list(np.random.default_rng(seed).permutation(X.columns))
        diff = figures.max_abs_difference(eval_predictions.p[at], candidate_model.predict(X.iloc[at][order]))
        observed.append((diff, seed))
        assert th.holds(diff), th.explain("max prediction difference after reordering columns", diff, f"permutation seed {seed}; {sample}")

    _explore(check, observed, record_gate, "prediction_difference", th, f"columns reordered; {rows} rows per example")


def test_wider_dtypes(candidate_model, eval_predictions, feature_spec, pipeline_settings, thresholds, record_gate):
    th, rows = thresholds.prediction_difference, pipeline_settings.gates.robustness.rows_per_example
    observed = []
    X = eval_predictions.frame[feature_spec.columns]
    # One seeded, bounded sample for the six dtype combinations (hypothesis tries each).
    at = rb.RowSample(pipeline_settings.seed, rows).positions(len(X))
    sample = X.iloc[at]

    @given(spec=rb.dtype_specs())
    def check(spec):
        wider = spec.apply(sample, list(feature_spec.numeric), list(feature_spec.categorical))
        try:
            diff = figures.max_abs_difference(eval_predictions.p[at], candidate_model.predict(wider))
        except Exception as e:
            observed.append((float("inf"), spec))
            raise AssertionError(th.explain("max prediction difference with wider dtypes", float("inf"), f"predict raised {type(e).__name__}: {str(e).splitlines()[0][:150]}; {spec}")) from None
        observed.append((diff, spec))
        assert th.holds(diff), th.explain("max prediction difference with wider dtypes", diff, f"{spec}")

    _explore(check, observed, record_gate, "prediction_difference", th,
             f"numeric and categorical columns cast to wider dtypes; {len(at)} rows")


def test_directional(gate_session, eval_predictions, spread, pipeline_settings, thresholds, record_gate):
    cfg, th = pipeline_settings.gates.robustness, thresholds.directional_drop
    assert cfg.directional, "no directional expectation configured (gates.robustness.directional)"
    observed = []
    frame = eval_predictions.frame
    for exp in cfg.directional:
        sign = 1 if exp.direction == "increasing" else -1

        @given(spec=rb.shift_specs(exp.feature, cfg.rows_per_example, exp.step_relative))
        def check(spec):
            at = spec.sample.positions(len(frame))  # unshifted predictions: the session's, as above
            before = eval_predictions.p[at]
            after = gate_session.predict(spec.apply(frame.iloc[at], float(spread[exp.feature]), +1))
            # How far the prediction moved against the expected direction, relative to itself.
            against = np.maximum(0.0, -sign * (after - before)) / np.abs(before)
            worst = float(against.max())
            observed.append((worst, spec))
            assert th.holds(worst), th.explain(f"prediction drop against {exp.direction} {exp.feature}", worst, f"{spec}")

        _explore(check, observed, record_gate, "directional_drop", th, f"worst row; {exp.feature} {exp.direction}")
