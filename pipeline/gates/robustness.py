"""Robustness gates (hypothesis): perturbation specs drawn by hypothesis, one batched predict each
(missing values, unseen categories and the directional expectations: one predict for all
their examples; a failure is explored again one predict per example, to shrink it:
pipeline.robustness.explore_batched).

The noise gate is the exception: its figure is one stable statistic over a fixed seeded
sample (hypothesis's worst-of-random-examples figure changed from run to run).

A failure shows hypothesis's shrunk minimal spec in the message. The unperturbed rows'
predictions are the session's (batch_independent checks that a row's prediction does not
depend on its batch), so each example costs one predict.
"""

from dataclasses import replace
from typing import Any

from hypothesis import given

from pipeline import checks
from pipeline import robustness as rb
from pipeline.catalogue import Inputs, NotApplicable, export, spec
from pipeline.checks import Finding


@spec(
    "robustness",
    defaults={
        "dev": "{max: 0.1, required: false}",
        "staging": "{max: 0.05}  # 95 % of rows move < 5 % under measurement noise; tighten once the model is known",
    },
)
def noise_stability(run: Inputs) -> Finding | NotApplicable:
    """How far resolution-scaled noise on every numeric feature at once moves the predictions
    (relative to them; a classifier's probabilities, in probability)."""
    s, settings = run.session, run.settings
    cfg, pr, features = settings.gates.robustness, s.predictions, s.features
    if not features.numeric:
        data = settings.data
        return NotApplicable(
            "no numeric feature to add noise to",
            stated=settings.stated(data, "numeric_features") and data.numeric_features == [],
            how="set data.numeric_features: [] to say the data has none",
        )
    # One fixed, seeded sample and every numeric feature at once: the same figure every run.
    numeric = tuple(features.numeric)
    sample = rb.RowSample(settings.seed, cfg.noise_rows)
    at = sample.positions(len(pr.frame))
    sd, how = rb.noise_scale(s.train_frame, list(numeric), cfg)

    def judged(columns: tuple[str, ...]) -> Finding:
        noise = rb.NoiseSpec(sample, columns, how)
        return checks.noise_stability(
            pr.p[at],
            s.predict(noise.apply(pr.frame.iloc[at], sd)),
            percentile=cfg.percentile,
            spec=noise,
            absolute=settings.data.classifier,
        )

    finding = judged(numeric)
    if run.holds(finding):
        return finding
    # Failed: which column's noise alone moves the predictions most, for the message.
    alone = max(((c, judged((c,)).value) for c in numeric), key=lambda cv: cv[1])
    return replace(finding, detail=f"{finding.detail}; noise on {alone[0]} alone: p{cfg.percentile:g} {alone[1]:.3g}")


@spec(
    "robustness",
    defaults={
        "staging": "{max: 0, unit: rows}",
    },
)
def missing_values(run: Inputs) -> Finding:
    """Rows whose prediction is not finite when hypothesis-drawn cells are missing."""
    s = run.session
    return rb.explore_batched(
        s.predict,
        run.holds,
        rb.Perturbation(
            rb.mask_specs(s.features.columns, run.settings.gates.robustness.rows_per_example),
            lambda drawn: drawn.apply(drawn.sample.take(s.eval_frame)),
            lambda drawn, rows, predict: checks.missing_values(predict, rows, drawn),
        ),
    )


@spec(
    "robustness",
    defaults={
        "staging": "{max: 0, unit: rows}",
    },
)
def unseen_categories(run: Inputs) -> Finding | NotApplicable:
    """Rows whose prediction is not finite when categorical columns hold values never seen in training."""
    s, settings = run.session, run.settings
    if not s.features.categorical:
        data = settings.data
        return NotApplicable(
            "no categorical feature to inject unseen categories into",
            stated=settings.stated(data, "categorical_features") and data.categorical_features == [],
            how="set data.categorical_features: [] to say the data has none",
        )
    return rb.explore_batched(
        s.predict,
        run.holds,
        rb.Perturbation(
            rb.unseen_specs(list(s.features.categorical), settings.gates.robustness.rows_per_example),
            lambda drawn: drawn.apply(drawn.sample.take(s.eval_frame)),
            lambda drawn, rows, predict: checks.unseen_categories(predict, rows, drawn),
        ),
    )


@spec(
    "robustness",
    defaults={
        "staging": "{max: 0}",
    },
)
def column_order(run: Inputs) -> Finding:
    """The largest prediction change when the columns arrive in another order.

    Each example: a bounded sample of rows with its columns in a drawn order. How the model
    finds its columns does not depend on how many rows there are."""
    s, pr = run.session, run.session.predictions
    X = pr.frame[s.features.columns]

    def make(observe: rb.Observe) -> Any:
        @given(sample=rb.row_samples(run.settings.gates.robustness.rows_per_example), seed=rb.st.integers(0, 2**31 - 1))
        def example(sample: rb.RowSample, seed: int) -> None:
            at = sample.positions(len(X))
            observe(checks.column_order(s.model, X.iloc[at], pr.p[at], seed))

        return example

    return rb.explore(run.holds, make)


@spec(
    "robustness",
    defaults={
        "staging": "{max: 0}",
    },
)
def wider_dtypes(run: Inputs) -> Finding:
    """The largest prediction change when columns arrive in wider dtypes (hypothesis tries the six)."""
    s, pr = run.session, run.session.predictions
    X = pr.frame[s.features.columns]
    at = rb.RowSample(run.settings.seed, run.settings.gates.robustness.rows_per_example).positions(len(X))

    def make(observe: rb.Observe) -> Any:
        @given(dtypes=rb.dtype_specs())
        def example(dtypes: rb.DtypeSpec) -> None:
            wider = dtypes.apply(X.iloc[at], list(s.features.numeric), list(s.features.categorical))
            observe(checks.wider_dtypes(s.model, wider, pr.p[at], dtypes))

        return example

    return rb.explore(run.holds, make)


@spec(
    "robustness",
    defaults={
        "dev": "{max: 0.02, required: false}",
        "staging": "{max: 0.01}",
    },
)
def directional(run: Inputs) -> Finding | NotApplicable:
    """The share of rows whose prediction moves against a configured direction when its feature moves."""
    s, settings = run.session, run.settings
    cfg, pr = settings.gates.robustness, s.predictions
    if not cfg.directional:
        return NotApplicable(
            "no directional expectation configured (gates.robustness.directional)",
            stated=settings.stated(cfg, "directional"),
            how="list the expectations under gates.robustness.directional, or set it to [] to say there are none",
        )
    if settings.data.task == "multiclass":
        return NotApplicable(
            "a multiclass model's probabilities move together (one rises as another falls): no one direction to expect",
            stated=False,
            how="state the expectations for a binary model, or leave gates.robustness.directional empty",
        )

    def expectation(exp: Any) -> rb.Perturbation:
        spread = float(s.spread[exp.feature])

        def judge(shift: rb.ShiftSpec, shifted: Any, predict: Any) -> Finding:
            before = pr.p[shift.sample.positions(len(pr.frame))]
            return checks.directional(
                before,
                predict(shifted),
                direction=exp.direction,
                feature=exp.feature,
                spec=shift,
                absolute=settings.data.classifier,
            )

        return rb.Perturbation(
            rb.shift_specs(exp.feature, cfg.rows_per_example, exp.step_relative),
            lambda shift: shift.apply(shift.sample.take(pr.frame), spread, +1),
            judge,
        )

    return rb.explore_batched(s.predict, run.holds, *[expectation(exp) for exp in cfg.directional])


__all__ = export(__name__)
