"""Registry: the only module that talks to MLflow (tracking store and model registry)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from pipeline.config import Settings
from pipeline.data import Dataset, FeatureSpec
from pipeline.errors import InputError, RegistryUnavailable

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


def _quiet_mlflow() -> None:
    # MLflow logs migrations and emoji links at INFO; gate output should stay readable.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    # With a tracking server MLflow writes "View run ... at: URL" to stdout, which would
    # corrupt --json output; the run id is in our own output already.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def connect(settings: Settings):
    """Point MLflow at the configured store and return a client; bounded patience with servers."""
    import mlflow
    from mlflow import MlflowClient

    _quiet_mlflow()
    ml = settings.mlflow
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(ml.http_timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(ml.http_max_retries)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    uri = ml.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # mlflow.set_tracking_uri also exports $MLFLOW_TRACKING_URI, which config.load reads as
    # the user's override: put back what the user had so the next config means itself.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def reachable(settings: Settings) -> Iterator[None]:
    """Turn a store that cannot be reached into one line naming it."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        text = str(e)
        if any(k in text for k in ("Connection refused", "Max retries", "ConnectionError", "timed out", "API request to")):
            raise RegistryUnavailable(
                f"tracking server {settings.mlflow.tracking_uri} unreachable: {text.splitlines()[0][:200]}"
            ) from None
        raise


_TRANSIENT = ("IntegrityError", "database is locked", "Giving up after", "deadlock detected",
              "could not serialize", "UniqueViolation", "sqlalche.me/e/21/gkpj", "sqlalche.me/e/21/e3q8")


def retry(fn, *args, attempts: int = 6, **kwargs):
    """Call a registry write again when a concurrent writer made it conflict.

    Servers answer concurrent writers with integrity errors (two new versions numbered
    alike, two new registered models) or, on SQLite, "database is locked"; the write did
    not happen, so it is safe to repeat after a jittered pause.
    """
    import random
    import time

    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except MlflowException as e:
            if attempt == attempts - 1 or not any(k in str(e) for k in _TRANSIENT):
                raise
            time.sleep(random.uniform(0.2, 0.6) * (attempt + 1))


def ensure_registered_model(settings: Settings, name: str) -> None:
    """Create the registered model if no pipeline has yet (concurrent creators are fine)."""
    from mlflow.exceptions import MlflowException

    client = connect(settings)
    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        retry(client.create_registered_model, name)
    except MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code) and "already exists" not in str(e):
            raise


def ensure_experiment(settings: Settings) -> str:
    import mlflow

    client = connect(settings)
    ml = settings.mlflow
    exp = client.get_experiment_by_name(ml.experiment)
    if exp is None:
        location = None
        if not ml.tracking_uri.startswith(("http://", "https://")):
            ml.artifact_location.mkdir(parents=True, exist_ok=True)
            location = ml.artifact_location.as_uri()
        try:
            exp_id = client.create_experiment(ml.experiment, artifact_location=location)
        except Exception:  # a concurrent pipeline created it first
            exp = client.get_experiment_by_name(ml.experiment)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, given so MLflow does not infer them (~5-7 s)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")]


def trusted_types(model: Any) -> list[str]:
    """Exactly the types skops must be told to trust to load this model back (never all)."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def directory_digest(root: Path) -> str:
    """SHA-256 over every file under `root`: relative path and content, in path order."""
    root = Path(root)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def model_digest(settings: Settings, model_uri: str) -> str:
    """SHA-256 of a model's artifact files as the store holds them now."""
    import mlflow.artifacts

    connect(settings)
    with tempfile.TemporaryDirectory() as tmp, reachable(settings):
        local = mlflow.artifacts.download_artifacts(artifact_uri=_artifact_uri(settings, model_uri), dst_path=tmp)
        return directory_digest(Path(local))


def _artifact_uri(settings: Settings, model_uri: str) -> str:
    """Resolve models:/NAME/VERSION to the storage location of its files."""
    client = connect(settings)
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

    client = connect(settings)
    with reachable(settings):
        try:
            if ref.startswith("@"):
                return client.get_model_version_by_alias(name, ref[1:])
            return client.get_model_version(name, ref)
        except MlflowException as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e.error_code) or "not found" in str(e).lower() or "INVALID_PARAMETER_VALUE" in str(e.error_code):
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


def load_pyfunc(settings: Settings, uri: str):
    """Load a logged model as pyfunc (the flavour serving uses)."""
    import mlflow.pyfunc

    return _load(settings, uri, mlflow.pyfunc.load_model)


def _load(settings: Settings, uri: str, loader):
    from mlflow.exceptions import MlflowException

    connect(settings)
    with reachable(settings):
        try:
            return loader(uri)
        except MlflowException as e:
            raise InputError(f"--model-uri {uri}: {str(e).splitlines()[0][:200]}") from None
        except OSError as e:
            raise InputError(f"--model-uri {uri}: {e}") from None


def log_candidate(settings: Settings, model: Any, data: Dataset, eval_frame: pd.DataFrame, metrics: dict[str, float]) -> Candidate:
    """Log a fitted model as a new run and a new version of the registered model."""
    import mlflow
    import mlflow.sklearn

    features: FeatureSpec = data.features
    ml = settings.mlflow
    commit = git_commit(settings.config_path.parent)
    X_eval = eval_frame[features.columns]
    with reachable(settings):
        ensure_experiment(settings)
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
            dataset = mlflow.data.from_pandas(
                data.frame, source=str(data.path), targets=data.target, name=data.path.name, digest=data.digest[:36]
            )
            # Concurrent runs logging the same data file race on its dataset row (unique per
            # experiment, name and digest); the retry finds the row and links it.
            retry(mlflow.log_input, dataset, context="training")
            example = X_eval.head(5)
            signature = signature_for(features)
            info = mlflow.sklearn.log_model(
                model,
                name=MODEL_ARTIFACT,
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=trusted_types(model),
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
            )
            ensure_registered_model(settings, ml.registered_model)
            mv = retry(mlflow.register_model, info.model_uri, ml.registered_model, tags=tags)
        digest = model_digest(settings, f"models:/{ml.registered_model}/{mv.version}")
        client = connect(settings)
        retry(client.set_model_version_tag, ml.registered_model, mv.version, TAG_MODEL, digest)
        retry(client.set_model_version_tag, ml.registered_model, mv.version, "run_id", run.info.run_id)
    return Candidate(ml.registered_model, str(mv.version), run.info.run_id, digest)


def signature_for(features: FeatureSpec):
    """The model's signature from the feature spec, not from a sample.

    Inferred from a few rows, a categorical column that happens to be empty there is
    typed double and the served model then fails on it.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("double", c, required=True) for c in features.numeric]
    inputs += [ColSpec("string", c, required=True) for c in features.categorical]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double")]))


def to_jsonable(obj: Any) -> Any:
    """JSON-safe copy of figures (numpy scalars, NaN and inf as strings)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else str(f)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True)


# ---------------------------------------------------------------- evidence and aliases

EVIDENCE_DIR = "evidence"


def _store_exists(settings: Settings) -> bool:
    uri = settings.mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    return True


def champion_version(settings: Settings, alias: str) -> tuple[str, str] | None:
    """(name, version) holding `alias` in the registered model, None when there is none."""
    from mlflow.exceptions import MlflowException

    if not _store_exists(settings):
        return None
    client = connect(settings)
    name = settings.mlflow.registered_model
    with reachable(settings):
        try:
            mv = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
    return name, str(mv.version)


def store_evidence(settings: Settings, name: str, version: str, run_id: str, doc: dict[str, Any]) -> str:
    """Log the evidence as an artifact of the version's run and summarise it in version tags."""
    from pipeline import evidence as ev

    client = connect(settings)
    env = doc["environment"]
    stamp = doc["ended"].replace(":", "").replace("-", "")
    path = f"{EVIDENCE_DIR}/{env}/v{version}-{stamp}.json"
    digest = ev.digest(doc)
    with reachable(settings), tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(path).name
        local.write_bytes(ev.canonical(doc))
        retry(client.log_artifact, run_id, str(local), artifact_path=str(Path(path).parent))
        for key, value in {
            f"gates.{env}.status": doc["status"],
            f"gates.{env}.evidence": path,
            f"gates.{env}.evidence_sha256": digest,
            f"gates.{env}.ended": doc["ended"],
        }.items():
            retry(client.set_model_version_tag, name, version, key, value)
    return path


def load_evidence(settings: Settings, name: str, version: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Evidence recorded on a version, per environment: (document, digest in the tag)."""
    mv = get_version(settings, name, version)
    tags = mv.tags or {}
    out: dict[str, tuple[dict[str, Any], str]] = {}
    client = connect(settings)
    for key, path in tags.items():
        if not (key.startswith("gates.") and key.endswith(".evidence")):
            continue
        env = key[len("gates."):-len(".evidence")]
        with reachable(settings), tempfile.TemporaryDirectory() as tmp:
            try:
                local = client.download_artifacts(mv.run_id, path, tmp)
            except Exception as e:  # a missing artifact is a refusal, not a crash
                raise InputError(f"{name} version {version}: evidence artifact {path} unreadable: {str(e).splitlines()[0][:120]}") from None
            doc = json.loads(Path(local).read_text())
        out[env] = (doc, tags.get(f"gates.{env}.evidence_sha256", ""))
    return out


def move_alias(settings: Settings, name: str, alias: str, version: str, *, evidence_sha256: str, who: str, evidence_env: str) -> str | None:
    """Point `alias` at `version`; the previous holder keeps `previous-<alias>`. Returns it."""
    import datetime as dt

    from mlflow.exceptions import MlflowException

    client = connect(settings)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with reachable(settings):
        try:
            previous = str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            previous = None
        if previous != version:
            if previous is not None:
                retry(client.set_registered_model_alias, name, f"previous-{alias}", previous)
            retry(client.set_registered_model_alias, name, alias, version)
        for key, value in {
            f"promoted.{alias}.by": who,
            f"promoted.{alias}.at": now,
            f"promoted.{alias}.evidence_sha256": evidence_sha256,
            f"promoted.{alias}.evidence_env": evidence_env,
            f"promoted.{alias}.replaced": previous or "none",
            # Stages are deprecated in MLflow 3; the name stays visible as a tag.
            "stage": alias,
        }.items():
            retry(client.set_model_version_tag, name, version, key, value)
        if (client.get_model_version(name, version).tags or {}).get("archived") == "true":
            client.delete_model_version_tag(name, version, "archived")  # holding an alias again
    return previous


def rollback_alias(settings: Settings, name: str, alias: str, who: str) -> tuple[str, str]:
    """Swap `alias` and `previous-<alias>`: one command undoes the last promotion."""
    import datetime as dt

    from mlflow.exceptions import MlflowException

    client = connect(settings)
    with reachable(settings):
        try:
            current = str(client.get_model_version_by_alias(name, alias).version)
            previous = str(client.get_model_version_by_alias(name, f"previous-{alias}").version)
        except MlflowException:
            raise InputError(f"model registry: {name} has no @{alias} and @previous-{alias} to roll back between") from None
        client.set_registered_model_alias(name, alias, previous)
        client.set_registered_model_alias(name, f"previous-{alias}", current)
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        client.set_model_version_tag(name, previous, f"rolled_back.{alias}.at", now)
        client.set_model_version_tag(name, previous, f"rolled_back.{alias}.by", who)
        client.set_model_version_tag(name, previous, "stage", alias)
    return previous, current


def versions(settings: Settings, name: str) -> list[Any]:
    """All versions of a registered model, newest first, with their aliases."""
    client = connect(settings)
    with reachable(settings):
        found = client.search_model_versions(f"name = '{name}'")
        aliases: dict[str, list[str]] = {}
        try:
            rm = client.get_registered_model(name)
            for alias, v in (rm.aliases or {}).items():
                aliases.setdefault(str(v), []).append(alias)
        except Exception:
            pass
    out = sorted(found, key=lambda mv: int(mv.version), reverse=True)
    for mv in out:
        mv._pipeline_aliases = sorted(aliases.get(str(mv.version), []))
    return out


def archive_old_versions(settings: Settings, name: str) -> list[str]:
    """Tag versions beyond the newest `keep_versions` that hold no alias as archived."""
    client = connect(settings)
    archived = []
    for mv in versions(settings, name)[settings.mlflow.keep_versions:]:
        if mv._pipeline_aliases or (mv.tags or {}).get("archived") == "true":
            continue
        client.set_model_version_tag(name, mv.version, "archived", "true")
        archived.append(str(mv.version))
    return archived


def save_model(model: Any, features: FeatureSpec, path: Path) -> None:
    """Save a sklearn model in MLflow's format (skops), as log_candidate logs it."""
    import mlflow.sklearn

    _quiet_mlflow()
    mlflow.sklearn.save_model(
        model, str(path), serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=trusted_types(model), signature=signature_for(features),
        pip_requirements=pip_requirements(),
    )


def roundtrip_pyfunc(model: Any, features: FeatureSpec, path: Path):
    """Save a model with MLflow and load it back as pyfunc, the way serving loads it."""
    import mlflow.pyfunc

    save_model(model, features, path)
    return mlflow.pyfunc.load_model(str(path))


def log_files(settings: Settings, run_id: str, files: list[Path], artifact_path: str) -> None:
    """Log local files as artifacts of a run (reports, plots)."""
    client = connect(settings)
    with reachable(settings):
        for f in files:
            sub = artifact_path if f.parent.name != "plots" else f"{artifact_path}/plots"
            client.log_artifact(run_id, str(f), artifact_path=sub)


def ping(settings: Settings) -> None:
    """Fail fast, in one line, when a tracking server does not answer its health check."""
    import urllib.error
    import urllib.request

    uri = settings.mlflow.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=min(10, settings.mlflow.http_timeout_s)) as r:
            if r.status == 200:
                return
            reason = f"health check answered {r.status}"
    except urllib.error.HTTPError as e:
        reason = f"health check answered {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = str(getattr(e, "reason", e))
    raise RegistryUnavailable(f"tracking server {uri} unreachable: {reason}")
