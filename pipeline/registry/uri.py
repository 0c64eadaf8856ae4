"""What a --model-uri names, checked before any gate runs (and before the store is touched)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import InputError


def resolve(settings: Settings, uri: str) -> str | None:
    """The registered version a model URI names (None for a run or a folder), or InputError.

    A registry URI needs an existing store and an existing version or alias; a plain path
    must be an MLflow model folder. An embedded store that does not exist is not created.
    """
    from pipeline.registry.model import check_model_files, get_version, parse_model_uri
    from pipeline.registry.store import store_exists

    parsed = parse_model_uri(uri)
    if uri.startswith("models:/") and parsed is None:
        raise InputError(f"--model-uri {uri}: expected models:/NAME/VERSION or models:/NAME@ALIAS")
    if parsed is not None:
        if not store_exists(settings):
            raise InputError(f"--model-uri {uri}: no model registry at {settings.mlflow.tracking_uri}")
        try:
            mv = get_version(settings, *parsed)
        except InputError as e:
            raise InputError(f"--model-uri {uri}: {e}") from None
        # Missing or altered model files stop the run here: no gate runs, no evidence is written.
        exact = f"models:/{mv.name}/{mv.version}"
        try:
            check_model_files(settings, mv)
        except InputError as e:
            raise InputError(f"--model-uri {uri}: {e}" if uri != exact else str(e)) from None
        return str(mv.version)
    if "://" in uri or uri.startswith(("runs:/", "mlflow-artifacts:/")):
        return None  # a run's or a server's artifact: loading it says whether it exists
    if not (Path(uri) / "MLmodel").is_file():
        raise InputError(f"--model-uri {uri}: not an MLflow model folder (no MLmodel file)")
    return None
