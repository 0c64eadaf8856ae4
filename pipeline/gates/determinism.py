"""Determinism gates: the same inputs and seed give the same predictions, however asked.

Each compares the session's one predict of a bounded, seeded sample of evaluation rows
(`gates.determinism.compare_rows`) with the same rows asked again another way.
"""

from pipeline import checks, registry
from pipeline.catalogue import Inputs, export, spec
from pipeline.checks import Finding


@spec(
    "determinism",
    defaults={
        "staging": "{max: 0}",
    },
)
def refit_identical(run: Inputs) -> Finding:
    """A refit on the same rows and seed predicts the same.

    One refit compared with the model itself, or two on a bounded, seeded sample where the
    training rows are many: determinism does not need the full training set to show."""
    s, settings = run.session, run.settings
    train = s.train_frame
    return checks.refit_identical(
        s.model,
        train[s.features.columns],
        train[settings.data.target],
        *s.compared,
        refit_rows=settings.gates.determinism.refit_rows,
        seed=settings.seed,
    )


@spec(
    "determinism",
    defaults={
        "staging": "{max: 0}",
    },
)
def predict_twice_identical(run: Inputs) -> Finding:
    """The same rows predicted twice give the same numbers."""
    return checks.predict_twice_identical(run.session.model, *run.session.compared)


@spec(
    "determinism",
    needs=("tmp_path",),
    defaults={
        "staging": "{max: 0}",
    },
)
def mlflow_roundtrip_identical(run: Inputs) -> Finding:
    """The model as MLflow's pyfunc flavour loads it predicts the same.

    Already saved by MLflow and loaded from it (mlflow.sklearn): the pyfunc flavour of the
    same files, as serving loads them, must give the same numbers (without MLflow's warning
    about installed packages, which serving prints where it loads the model)."""
    s = run.session
    if s.model_uri:
        loaded = registry.load_pyfunc(s.settings, s.model_uri, check_requirements=False)
        how = f"{s.model_uri} loaded as pyfunc vs as sklearn"
    else:
        assert run.tmp_path is not None, "a model fitted in the session is saved to tmp_path"
        loaded = registry.roundtrip_pyfunc(s.model, s.features, run.tmp_path / "model")
        how = "saved with mlflow.sklearn (skops), loaded as pyfunc"
    return checks.mlflow_roundtrip_identical(loaded, *s.compared, how)


@spec(
    "determinism",
    defaults={
        "staging": "{max: 0}",
    },
)
def batch_independent(run: Inputs) -> Finding:
    """A row's prediction does not depend on the batch it arrives in (shuffled, chunked)."""
    return checks.batch_independent(run.session.model, *run.session.compared, run.settings.seed)


__all__ = export(__name__)
