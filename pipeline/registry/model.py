"""Model versions: logging a candidate, saving, loading, looking up, digests and signature."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.errors import InputError
from pipeline.registry import sqlite_view, store

if TYPE_CHECKING:  # annotations only: `list`, `promote` and `rollback` need neither pandas nor pandera
    import pandas as pd

    from pipeline.data import Dataset, FeatureSpec

# mlflow (1.1 s) and skops.io (1.3 s on top of mlflow) are imported inside functions: importing
# pipeline.registry stays 0.19 s without them (see store.py); skops only where a model is logged or saved.

TAG_DATA = "data_sha256"
TAG_CONFIG = "config_sha256"
TAG_MODEL = "model_sha256"
TAG_GIT = "git_commit"
TAG_SPLIT = "split_seed"
MODEL_ARTIFACT = "model"


@dataclass(frozen=True)
class Candidate:
    """A registered model version, as training left it."""

    name: str
    version: str
    run_id: str
    model_sha256: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, given so MLflow does not infer them (~5-7 s)."""
    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")]


def trusted_types(model: Any) -> list[str]:
    """Exactly the types skops must be told to trust to load this model back (never all)."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def signature_for(features: FeatureSpec, model: Any = None):
    """The model's signature from the feature spec, not from a sample: a number per row, or a
    classifier's probability per row and class (its pyfunc answers predict_proba).

    Inferred from a few rows, a categorical column that happens to be empty there is
    typed double and the served model then fails on it.
    """
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    inputs: list[ColSpec | TensorSpec] = [ColSpec("double", c, required=True) for c in features.numeric]
    inputs += [ColSpec("string", c, required=True) for c in features.categorical]
    classes = getattr(model, "classes_", None)
    outputs: list[ColSpec | TensorSpec] = (
        [ColSpec("double")] if classes is None else [TensorSpec(np.dtype("float64"), (-1, len(classes)))]
    )
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def pyfunc_predict_fn(model: Any) -> str:
    """What the model's pyfunc flavour answers (serving too): a classifier's probabilities."""
    return "predict" if getattr(model, "classes_", None) is None else "predict_proba"


# MLflow writes this file (the version's name and number) into a model's folder whenever a
# models:/ URI is downloaded or loaded; from a local store, into the store's own folder. It is
# the registry's bookkeeping, not the model, so the digest leaves it out.
_REGISTRY_META = "registered_model_meta"  # mlflow.store.artifact.models_artifact_repo.REGISTERED_MODEL_META_FILE_NAME


def directory_digest(root: Path) -> str:
    """SHA-256 over every file under `root` but MLflow's registry note: relative path and
    content, in path order."""
    root = Path(root)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != _REGISTRY_META):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class StoredVersion:
    """A registered version as the embedded store's file records it: its run, its tags, and the
    folders on this machine that hold its run's artifacts and its model's files (None where the
    store keeps them elsewhere: a server, an object store)."""

    run_id: str | None
    tags: dict[str, str]
    run_artifacts: Path | None
    model_files: Path | None


def _local_folder(uri: str | None) -> Path | None:
    """The folder a file: URI (or an absolute path) names; None for any other location."""
    if not uri:
        return None
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        parsed = urlparse(uri)
        return Path(unquote(parsed.path)) if parsed.netloc in ("", "localhost") else None
    return Path(uri) if Path(uri).is_absolute() else None


def stored_version(settings: Settings, name: str, version: str) -> StoredVersion | None:
    """Version `version` of `name` read from the embedded store's file (sqlite_view), or None
    where that file is not read that way or holds no such version: then MLflow answers, in its
    own words."""
    with sqlite_view.open_view(settings) as view:
        found = view.version(name, version) if view is not None else None
        if view is None or found is None:
            return None
        run_id, files_uri, tags = found
        artifacts = view.artifact_uri(run_id) if run_id else None
    return StoredVersion(run_id, tags, _local_folder(artifacts), _local_folder(files_uri))


def version_tags(settings: Settings, name: str, version: str) -> dict[str, str]:
    """A version's tags: from the store's file where sqlite_view reads it, else from MLflow."""
    stored = stored_version(settings, name, version)
    return stored.tags if stored is not None else dict(get_version(settings, name, version).tags or {})


def model_digest(settings: Settings, model_uri: str) -> str:
    """SHA-256 of a model's artifact files as the store holds them now: read in the store's own
    folder where the embedded store keeps them on this machine (the same files MLflow's
    download copies), else downloaded through MLflow."""
    parsed = parse_model_uri(model_uri)
    if parsed is not None and not parsed[1].startswith("@"):
        stored = stored_version(settings, *parsed)
        if stored is not None and stored.model_files is not None and stored.model_files.is_dir():
            return directory_digest(stored.model_files)
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    store.connect(settings)
    with tempfile.TemporaryDirectory() as tmp, store.reachable(settings):
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=_artifact_uri(settings, model_uri), dst_path=tmp)
        except (MlflowException, OSError) as e:  # a deleted or unreadable model folder
            # MLflow's message is a header, a "#####" line, then the reason ("No such artifact: ...").
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("#")]
            why = lines[-1] if lines else type(e).__name__
            raise InputError(
                f"{model_uri}: model files missing or unreadable in the store ({why[:160]}; "
                f"at {_artifact_uri(settings, model_uri)})"
            ) from None
        return directory_digest(Path(local))


def check_model_files(settings: Settings, mv) -> str:
    """A registered version's model digest now, or InputError when its files are gone or differ
    from the digest recorded when it was logged (a corrupted or replaced artifact)."""
    model_uri = f"models:/{mv.name}/{mv.version}"
    digest = model_digest(settings, model_uri)
    logged = (mv.tags or {}).get(TAG_MODEL)
    if logged and logged != digest:
        raise InputError(
            f"{model_uri}: model files changed since version {mv.version} was logged "
            f"(sha256 now {digest[:12]}, logged {logged[:12]}); gate a freshly logged version"
        )
    return digest


def _artifact_uri(settings: Settings, model_uri: str) -> str:
    """Resolve models:/NAME/VERSION to the storage location of its files."""
    client = store.connect(settings)
    if model_uri.startswith("models:/"):
        rest = model_uri.removeprefix("models:/")
        if "/" in rest:
            name, ref = rest.split("/", 1)
            mv = get_version(settings, name, ref)
            return client.get_model_version_download_uri(name, mv.version)
    return model_uri


def get_version(settings: Settings, name: str, ref: str):
    """A model version by number or alias (`models:/NAME/3`, `models:/NAME@staging`)."""
    from mlflow.exceptions import MlflowException

    client = store.connect(settings)
    with store.reachable(settings):
        try:
            if ref.startswith("@"):
                return client.get_model_version_by_alias(name, ref[1:])
            return client.get_model_version(name, ref)
        except MlflowException as e:
            if (
                "RESOURCE_DOES_NOT_EXIST" in str(e.error_code)
                or "not found" in str(e).lower()
                or "INVALID_PARAMETER_VALUE" in str(e.error_code)
            ):
                raise InputError(f"model registry: model '{name}' version '{ref}' not found") from None
            raise


def parse_model_uri(uri: str) -> tuple[str, str] | None:
    """(name, version-or-@alias) for registry URIs; None for runs:/ and other URIs."""
    if not uri.startswith("models:/"):
        return None
    rest = uri.removeprefix("models:/")
    if "@" in rest and "/" not in rest:
        name, alias = rest.split("@", 1)
        return name, "@" + alias
    if "/" in rest:
        name, version = rest.split("/", 1)
        return name, version
    return None


def load_model(settings: Settings, uri: str):
    """Load a logged sklearn model (models:/..., runs:/... or a path)."""
    import mlflow.sklearn

    return _load(settings, uri, mlflow.sklearn.load_model)


def load_pyfunc(settings: Settings, uri: str, *, check_requirements: bool = True):
    """Load a logged model as pyfunc (the flavour serving uses).

    `check_requirements=False` skips MLflow's warning about installed packages that differ from
    the model's requirements: it reads every installed distribution's file list (0.66 s of a
    0.8 s load here) to print a warning that changes nothing a gate compares."""
    import mlflow.pyfunc

    return _load(settings, uri, lambda u: mlflow.pyfunc.load_model(u, suppress_warnings=not check_requirements))


def _load(settings: Settings, uri: str, loader):
    from mlflow.exceptions import MlflowException

    store.connect(settings)
    with store.reachable(settings):
        try:
            return loader(uri)
        except MlflowException as e:
            raise InputError(f"--model-uri {uri}: {str(e).splitlines()[0][:200]}") from None
        except OSError as e:
            raise InputError(f"--model-uri {uri}: {e}") from None
        except Exception as e:  # a damaged artifact: skops' BadZipFile, a pickle error, ...
            raise InputError(
                f"--model-uri {uri}: the model could not be loaded ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
            ) from None


def log_candidate(
    settings: Settings, model: Any, data: Dataset, eval_frame: pd.DataFrame, metrics: dict[str, float]
) -> Candidate:
    """Log a fitted model as a new run and a new version of the registered model."""
    import mlflow
    import mlflow.sklearn
    from mlflow.data.pandas_dataset import from_pandas

    features: FeatureSpec = data.features
    ml = settings.mlflow
    commit = git_commit(settings.config_path.parent)
    X_eval = eval_frame[features.columns]
    with store.reachable(settings):
        store.ensure_experiment(settings)
        tags = {
            TAG_DATA: data.digest,
            TAG_CONFIG: settings.digest,
            TAG_SPLIT: str(settings.split.seed),
            "env": settings.env,
        }
        if commit:
            tags[TAG_GIT] = commit
        with mlflow.start_run(tags=tags) as run:
            params = {
                "model_type": settings.model.type,
                "log_target": settings.model.log_target,
                "seed": settings.seed,
                "split_seed": settings.split.seed,
                "test_size": settings.split.test_size,
                "data_path": str(data.path),
                "rows": len(data.frame),
                "n_numeric": len(features.numeric),
                "n_categorical": len(features.categorical),
                **{f"model.{k}": v for k, v in settings.model.params.items()},
            }
            mlflow.log_params(params)
            mlflow.log_metrics({f"eval_{k}": float(v) for k, v in metrics.items()})
            mlflow.log_dict(settings.resolved(), "config/resolved_config.json")
            dataset = from_pandas(
                data.frame, source=str(data.path), targets=data.target, name=data.path.name, digest=data.digest[:36]
            )
            # Concurrent runs logging the same data file race on its dataset row (unique per
            # experiment, name and digest); the retry finds the row and links it.
            store.retry(mlflow.log_input, dataset, context="training")
            example = X_eval.head(5)
            signature = signature_for(features, model)
            info = mlflow.sklearn.log_model(
                model,
                name=MODEL_ARTIFACT,
                pyfunc_predict_fn=pyfunc_predict_fn(model),
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=trusted_types(model),
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
            )
            store.ensure_registered_model(settings, ml.registered_model)
            mv = store.retry(mlflow.register_model, info.model_uri, ml.registered_model, tags=tags)
        digest = model_digest(settings, f"models:/{ml.registered_model}/{mv.version}")
        client = store.connect(settings)
        store.retry(client.set_model_version_tag, ml.registered_model, mv.version, TAG_MODEL, digest)
        store.retry(client.set_model_version_tag, ml.registered_model, mv.version, "run_id", run.info.run_id)
    return Candidate(ml.registered_model, str(mv.version), run.info.run_id, digest)


def save_model(model: Any, features: FeatureSpec, path: Path) -> None:
    """Save a sklearn model in MLflow's format (skops), as log_candidate logs it."""
    import mlflow.sklearn

    store.quiet_mlflow()
    mlflow.sklearn.save_model(
        model,
        str(path),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=trusted_types(model),
        pyfunc_predict_fn=pyfunc_predict_fn(model),
        signature=signature_for(features, model),
        pip_requirements=pip_requirements(),
    )


def roundtrip_pyfunc(model: Any, features: FeatureSpec, path: Path):
    """Save a model with MLflow and load it back as pyfunc, the way serving loads it."""
    import mlflow.pyfunc

    save_model(model, features, path)
    # Saved just now from this environment: its requirements are this environment's.
    return mlflow.pyfunc.load_model(str(path), suppress_warnings=True)
