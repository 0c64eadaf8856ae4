"""The CI workflow: valid against GitHub's schema, clean under zizmor, and a thin caller.

Every `run:` step must call a command the README documents: a Makefile target or a
run-pipeline subcommand, never a second implementation.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ml-pipeline.yml"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is not installed: it is in the dev extra (pip install -e '.[dev]')"
    return path


def _workflow() -> dict:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def test_workflow_matches_github_schema():
    out = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_zizmor_finds_nothing_above_low():
    out = subprocess.run([_tool("zizmor"), "--offline", "--min-severity", "medium", "--config", str(ROOT / ".github" / "zizmor.yml"), str(WORKFLOW)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No findings" in out.stdout, out.stdout


def test_triggers_and_jobs():
    wf = _workflow()
    on = wf["on"]
    assert on["push"]["branches"] == ["main", "develop"]
    assert "pull_request" in on
    assert on["schedule"][0]["cron"] == "0 2 * * *"
    inputs = on["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"environment", "promote"}
    jobs = wf["jobs"]
    names = [job["name"] for job in jobs.values()]
    assert names == ["data validation", "harness tests", "train and gates", "benchmarks", "docker image", "promote to staging"]
    promote = jobs["promote-staging"]
    assert "train-and-gates" in promote["needs"]
    assert "refs/heads/main" in promote["if"]
    assert "secrets.MLFLOW_TRACKING_URI" in str(promote)
    gates = jobs["train-and-gates"]
    uses = [s.get("uses", "") for s in gates["steps"]]
    assert any(u.startswith("EnricoMi/publish-unit-test-result-action@") for u in uses)
    assert any("GITHUB_STEP_SUMMARY" in s.get("run", "") for s in gates["steps"])
    for job in jobs.values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/setup-python@"):
                assert step["with"]["cache-dependency-path"] == "constraints.txt"


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, flags=re.M))


def _cli_subcommands() -> set[str]:
    from pipeline.cli import parser

    sub = next(a for a in parser()._actions if a.dest == "command")
    return set(sub.choices)


def test_every_run_step_is_a_documented_command():
    targets, subcommands = _make_targets(), _cli_subcommands()
    readme = (ROOT / "README.md").read_text()
    seen = []
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            for line in filter(None, (ln.strip() for ln in step.get("run", "").splitlines())):
                words = line.split()
                if words[0] == "make":
                    assert words[1] in targets, f"{line!r}: no Makefile target {words[1]}"
                    assert f"make {words[1]}" in readme, f"{line!r}: make {words[1]} is not documented in README.md"
                elif words[0].endswith("run-pipeline"):
                    assert words[1] in subcommands, f"{line!r}: no run-pipeline subcommand {words[1]}"
                elif words[0] == "cat" and "GITHUB_STEP_SUMMARY" in line:
                    assert words[1] == "reports/gate-report.md", line  # the report the gate run wrote
                else:
                    pytest.fail(f"{line!r}: a run step must call make or run-pipeline")
                seen.append(line)
    assert len(seen) >= 6
