"""docs/PIPELINE_GUIDE.md: every block marked `bash runnable` runs as written.

The blocks run in order, in one temporary copy of the project with its own MLflow store,
with the project's virtualenv first on PATH (as after `. .venv/bin/activate`). A block that
starts in a folder of its own (`cd "$(mktemp -d)"`) needs nothing the others made: it runs as
a test of its own, so the blocks spread over the suite's workers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import CHEAP, LIGHT_MODEL, SHARED_MACHINE, deep_merge

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "PIPELINE_GUIDE.md"

pytestmark = pytest.mark.slow


STANDALONE = 'cd "$(mktemp -d)"'


def runnable_blocks(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"```bash runnable\n(.*?)```", text, flags=re.S)]


def sequences(blocks: list[str]) -> dict[str, list[tuple[int, str]]]:
    """The blocks that build on each other (in order, numbered as in the guide), and each block
    that starts in a folder of its own, by test id."""
    numbered = list(enumerate(blocks, 1))
    return {"project": [(i, b) for i, b in numbered if not b.startswith(STANDALONE)],
            **{f"block-{i}": [(i, b)] for i, b in numbered if b.startswith(STANDALONE)}}


SEQUENCES = sequences(runnable_blocks(GUIDE.read_text()))


def test_guide_has_runnable_blocks():
    blocks = runnable_blocks(GUIDE.read_text())
    assert len(blocks) >= 5
    assert all(b.strip() for b in blocks)


@pytest.mark.parametrize("sequence", list(SEQUENCES))
def test_runnable_blocks_run_as_written(tmp_path, sequence):
    work = tmp_path / "project"
    work.mkdir()
    for part in ("configs", "data", "model_tests"):
        shutil.copytree(ROOT / part, work / part)
    for part in ("conftest.py", "pytest.ini"):
        shutil.copy(ROOT / part, work / part)
    # The guide is about commands, not speed or the model: the copy's latency bounds are ones a
    # busy machine meets, so a loaded CI host cannot turn a documentation test red, and it runs
    # conftest's cheap gate settings on its lighter model (each of its gate runs costs a third).
    cfg_path = work / "configs" / "pipeline_config.yaml"
    cfg = deep_merge(yaml.safe_load(cfg_path.read_text()), CHEAP)
    model_path = work / "configs" / "model_config.yaml"
    model_cfg = yaml.safe_load(model_path.read_text())
    model_cfg["model"] = deep_merge(model_cfg["model"], LIGHT_MODEL)
    model_path.write_text(yaml.safe_dump(model_cfg, sort_keys=False))
    loose = SHARED_MACHINE["environments"]["staging"]["thresholds"]
    for env in cfg["environments"].values():
        for key, bound in loose.items():
            if key in env["thresholds"] or "extends" not in env:  # the line where it is written or inherited from
                env["thresholds"][key] = {**bound, "required": env["thresholds"].get(key, {}).get("required", True)}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PIPELINE_", "PYTEST_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = str(tmp_path)  # the blocks' `mktemp -d` folders go away with the test's
    for i, block in SEQUENCES[sequence]:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=600)
        assert proc.returncode == 0, f"block {i} failed (exit {proc.returncode}):\n{block}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    # The blocks used the temporary store, never the repository's.
    assert sequence != "project" or (work / "mlruns" / "mlflow.db").is_file()
