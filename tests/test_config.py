"""Config loading: where errors point, how paths and the environment resolve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline import config
from pipeline.errors import InputError
from tests.conftest import AMES, write_project


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PIPELINE_CONFIG", raising=False)


def _refusal(*args) -> str:
    with pytest.raises(InputError) as e:
        config.load(*args)
    return str(e.value)


def test_unknown_default_env_names_its_source(tmp_path: Path):
    cfg = write_project(tmp_path / "p", {"default_env": "qa"})
    assert _refusal(cfg) == f"{cfg}: environments: unknown environment 'qa' (from default_env; known: dev, staging, production)"
    assert config.load(cfg, "dev").env == "dev"  # an explicit --env still works


def test_unknown_env_argument_names_its_source(tmp_path: Path):
    cfg = write_project(tmp_path / "p")
    assert _refusal(cfg, "prod") == f"{cfg}: environments: unknown environment 'prod' (from --env; known: dev, staging, production)"


def test_model_errors_name_the_model_config_file(tmp_path: Path):
    cfg = write_project(tmp_path / "p", model={"log_target": "sometimes"})
    message = _refusal(cfg)
    assert message.startswith(f"{tmp_path / 'p' / 'model_config.yaml'}: model.log_target: ")
    # A model given inline is reported against the pipeline config itself.
    raw = yaml.safe_load(cfg.read_text())
    raw.pop("model_config")
    raw["model"] = {"type": "lasso"}
    cfg.write_text(yaml.safe_dump(raw))
    assert _refusal(cfg).startswith(f"{cfg}: model.type: ")


def test_relative_paths_resolve_next_to_the_config(tmp_path: Path):
    folder = tmp_path / "p"
    cfg = write_project(folder, {"data": {"path": "data/x.csv"}, "mlflow": {"tracking_uri": "sqlite:///store/m.db", "artifact_location": "store/art"}})
    s = config.load(cfg)
    assert s.data.path == folder / "data" / "x.csv"
    assert s.mlflow.tracking_uri == f"sqlite:///{folder / 'store' / 'm.db'}"
    assert s.mlflow.artifact_location == folder / "store" / "art"


def test_tracking_uri_from_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = write_project(tmp_path / "p")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert config.load(cfg).mlflow.tracking_uri == "http://127.0.0.1:5999"


def test_thresholds_carry_their_environment(tmp_path: Path):
    s = config.load(write_project(tmp_path / "p"), "production")
    assert s.thresholds["mae"].env == "production"
    assert s.with_env("dev").thresholds["mae"].env == "dev"
    assert s.with_env("dev").thresholds["mae"].max > s.thresholds["mae"].max
    assert s.with_data_path(AMES).data.path == AMES
