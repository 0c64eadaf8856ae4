"""Robustness gates (hypothesis): perturbation specs drawn by hypothesis, one batched predict each
(missing values, unseen categories and the directional expectations: one predict for all
their examples; a failure is explored again one predict per example, to shrink it).

The noise gate is the exception: its figure is one stable statistic over a fixed seeded
sample (hypothesis's worst-of-random-examples figure changed from run to run).

A failure shows hypothesis's shrunk minimal spec in the message. The unperturbed rows'
predictions are the session's (batch_independent checks that a row's prediction does not
depend on its batch), so each example costs one predict.
"""

from hypothesis import given

from pipeline import checks
from pipeline import robustness as rb
from pipeline.gates import family

__all__ = ["test_noise_stability", "test_missing_values", "test_unseen_categories", "test_column_order",
           "test_wider_dtypes", "test_directional"]


@family("robustness")
def test_noise_stability(gate_session, eval_predictions, feature_spec, pipeline_settings, gate):
    cfg, frame = pipeline_settings.gates.robustness, eval_predictions.frame
    if not feature_spec.numeric:
        data = pipeline_settings.data
        return gate.not_applicable("no numeric feature to add noise to",
                                   stated=pipeline_settings.stated(data, "numeric_features") and data.numeric_features == [],
                                   how="set data.numeric_features: [] to say the data has none")
    # One fixed, seeded sample and every numeric feature at once: the same figure every run.
    numeric = tuple(feature_spec.numeric)
    sample = rb.RowSample(pipeline_settings.seed, cfg.noise_rows)
    at = sample.positions(len(frame))
    sd, how = rb.noise_scale(gate_session.train_frame, list(numeric), cfg)

    def judged(columns):
        spec = rb.NoiseSpec(sample, columns, how)
        after = gate_session.predict(spec.apply(frame.iloc[at], sd))
        return checks.noise_stability(eval_predictions.p[at], after, percentile=cfg.percentile, spec=spec)

    finding = judged(numeric)
    if gate.holds(finding):
        return
    # Failed: which column's noise alone moves the predictions most, for the message.
    alone = max(((c, judged((c,)).value) for c in numeric), key=lambda cv: cv[1])
    assert False, gate.explain(finding) + f"; noise on {alone[0]} alone: p{cfg.percentile:g} {alone[1]:.3g}"


@family("robustness")
def test_missing_values(gate_session, eval_frame, feature_spec, pipeline_settings, gate):
    gate.explore_batched(gate_session.predict, rb.Perturbation(
        rb.mask_specs(feature_spec.columns, pipeline_settings.gates.robustness.rows_per_example),
        lambda spec: spec.apply(spec.sample.take(eval_frame)),
        lambda spec, rows, predict: checks.missing_values(predict, rows, spec)))


@family("robustness")
def test_unseen_categories(gate_session, eval_frame, feature_spec, pipeline_settings, gate):
    if not feature_spec.categorical:
        data = pipeline_settings.data
        return gate.not_applicable("no categorical feature to inject unseen categories into",
                                   stated=pipeline_settings.stated(data, "categorical_features") and data.categorical_features == [],
                                   how="set data.categorical_features: [] to say the data has none")
    gate.explore_batched(gate_session.predict, rb.Perturbation(
        rb.unseen_specs(list(feature_spec.categorical), pipeline_settings.gates.robustness.rows_per_example),
        lambda spec: spec.apply(spec.sample.take(eval_frame)),
        lambda spec, rows, predict: checks.unseen_categories(predict, rows, spec)))


@family("robustness")
def test_column_order(candidate_model, eval_predictions, feature_spec, pipeline_settings, gate):
    X = eval_predictions.frame[feature_spec.columns]

    # Each example: a bounded sample of rows with its columns in a drawn order. How the model
    # finds its columns does not depend on how many rows there are.
    @given(sample=rb.row_samples(pipeline_settings.gates.robustness.rows_per_example), seed=rb.st.integers(0, 2**31 - 1))
    def example(sample, seed):
        at = sample.positions(len(X))
        gate.observe(checks.column_order(candidate_model, X.iloc[at], eval_predictions.p[at], seed))

    gate.explore(example)


@family("robustness")
def test_wider_dtypes(candidate_model, eval_predictions, feature_spec, pipeline_settings, gate):
    X = eval_predictions.frame[feature_spec.columns]
    # One seeded, bounded sample for the six dtype combinations (hypothesis tries each).
    at = rb.RowSample(pipeline_settings.seed, pipeline_settings.gates.robustness.rows_per_example).positions(len(X))

    @given(spec=rb.dtype_specs())
    def example(spec):
        wider = spec.apply(X.iloc[at], list(feature_spec.numeric), list(feature_spec.categorical))
        gate.observe(checks.wider_dtypes(candidate_model, wider, eval_predictions.p[at], spec))

    gate.explore(example)


@family("robustness")
def test_directional(gate_session, eval_predictions, pipeline_settings, gate):
    cfg, frame = pipeline_settings.gates.robustness, eval_predictions.frame
    if not cfg.directional:
        return gate.not_applicable("no directional expectation configured (gates.robustness.directional)",
                                   stated=pipeline_settings.stated(cfg, "directional"),
                                   how="list the expectations under gates.robustness.directional, or set it to [] to say there are none")

    def expectation(exp):
        spread = float(gate_session.spread[exp.feature])

        def judge(spec, shifted, predict):
            before = eval_predictions.p[spec.sample.positions(len(frame))]
            return checks.directional(before, predict(shifted), direction=exp.direction, feature=exp.feature, spec=spec)

        return rb.Perturbation(rb.shift_specs(exp.feature, cfg.rows_per_example, exp.step_relative),
                               lambda spec: spec.apply(spec.sample.take(frame), spread, +1), judge)

    gate.explore_batched(gate_session.predict, *[expectation(exp) for exp in cfg.directional])
