"""Config loading: where errors point, how paths and the environment resolve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import AMES, write_project
from pipeline import config
from pipeline.errors import InputError


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


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path):
    cfg = write_project(tmp_path / "p")
    text = cfg.read_text()
    # The same threshold twice in staging: YAML would silently keep the second.
    line = "      r2:\n        min: 0.88\n"
    assert line in text
    cfg.write_text(text.replace(line, line + "      r2:\n        min: 0.1\n", 1))
    first = text[: text.index(line)].count("\n") + 1
    assert _refusal(cfg) == f"{cfg}: line {first + 2} not valid YAML (key 'r2' given twice (first on line {first}))"


def test_an_error_line_stays_readable_however_large_the_value_it_quotes(tmp_path: Path):
    from pipeline import data, train

    cfg = write_project(tmp_path / "p")
    model = cfg.parent / "model_config.yaml"
    # A small YAML alias bomb as a model param's value: six levels of nine references each,
    # which the estimator's error message quotes whole (531,441 ones).
    bomb = "".join(f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9) if i else '1'}]\n" for i in range(7))
    raw = model.read_text().replace("    max_iter: 600", "    max_iter: *x6")
    model.write_text(bomb + raw)
    with pytest.raises(InputError) as e:
        config.load(cfg)  # the anchors are unknown top-level keys of the model config
    assert str(e.value) == f"{model}: x0: unknown key"
    # A huge value that loads (a nested list): the estimator's error quoting it is cut to a readable line.
    settings = config.load(write_project(tmp_path / "q", model={"params": {"max_iter": [[[1] * 90] * 90] * 9}}))
    ds = data.load(settings)
    with pytest.raises(InputError) as e:
        train.fit(settings, ds.features, ds.frame.head(300))
    message = str(e.value)
    # ... and it names the file the key is in: model_config.yaml, not the pipeline config.
    assert message.startswith(f"{settings.model_file}: model.params: ") and message.endswith(" more characters)")
    assert len(message) < 1100
