"""MLflow's share of the main job: `run-pipeline run` in process, with every MLflow call timed.

    python bench/mlflow_overhead.py --config PIPELINE_CONFIG [--json]      # run it where reports/ may go

Runs `pipeline.cli.main(["run", ...])` (train, log, register, gates, evidence, promotion)
against an existing embedded store, with timing wrappers around the registry functions the
job calls and the MLflow calls inside them. A call made inside another timed call is
listed in the breakdown but counted once, in its outermost caller. Nothing is changed:
the wrappers only read the clock.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

T_MLFLOW = time.perf_counter()
import mlflow  # noqa: E402
import mlflow.data  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import mlflow.sklearn  # noqa: E402
import mlflow.tracking.fluent  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

T_MLFLOW = time.perf_counter() - T_MLFLOW

from pipeline import cli, registry  # noqa: E402

STACK: list[tuple[str, str]] = []  # (label, kind) of the calls in progress
CALLS: list[tuple[str, float, bool, str]] = []  # kind:label, seconds, nested in a registry call, outermost caller
REGISTRY_KINDS = ("write", "read", "gate")


def wrap(owner, attr: str, label: str, kind: str) -> None:
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def timed(*a, **k):
        nested = any(k_ in REGISTRY_KINDS for _, k_ in STACK)
        root = STACK[0][0] if STACK else label
        STACK.append((label, kind))
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            CALLS.append((f"{kind}:{label}", time.perf_counter() - t, nested, root))
            STACK.pop()

    setattr(owner, attr, timed)
    # The registry package's modules call one another by module (store.connect, model.get_version):
    # the function is replaced where it is defined too, so that the calls inside the registry count.
    home = sys.modules.get(getattr(fn, "__module__", "") or "")
    if owner is registry and home is not None and getattr(home, attr, None) is fn:
        setattr(home, attr, timed)


# What the job does with MLflow, by the registry function that does it (write side, read side).
REGISTRY_WRITE = ["log_candidate", "store_evidence", "log_files", "move_alias", "archive_old_versions"]
REGISTRY_READ = ["load_model", "get_version", "model_digest", "champion_version", "load_evidence", "versions", "ping"]
# A gate's own work that happens to use MLflow (the determinism gate's save/load round trip).
GATE_WORK = ["roundtrip_pyfunc"]


def instrument() -> None:
    for name in REGISTRY_WRITE:
        wrap(registry, name, name, "write")
    for name in REGISTRY_READ:
        wrap(registry, name, name, "read")
    for name in GATE_WORK:
        wrap(registry, name, name, "gate")
    wrap(registry, "trusted_types", "trusted_types (skops)", "inner")
    wrap(registry, "git_commit", "git_commit (subprocess)", "inner")
    wrap(registry, "connect", "connect", "inner")
    wrap(registry, "ensure_experiment", "ensure_experiment", "inner")
    for attr in ("start_run", "log_params", "log_metrics", "log_dict", "log_input", "register_model"):
        wrap(mlflow, attr, f"mlflow.{attr}", "inner")
    wrap(mlflow.tracking.fluent, "end_run", "mlflow.end_run", "inner")
    wrap(mlflow.data, "from_pandas", "mlflow.data.from_pandas", "inner")
    wrap(mlflow.sklearn, "log_model", "mlflow.sklearn.log_model", "inner")
    wrap(mlflow.sklearn, "load_model", "mlflow.sklearn.load_model", "inner")
    for attr in (
        "set_model_version_tag",
        "log_artifact",
        "set_registered_model_alias",
        "get_model_version_by_alias",
        "download_artifacts",
        "search_model_versions",
        "get_model_version",
    ):
        wrap(MlflowClient, attr, f"client.{attr}", "inner")
    # The job's non-MLflow steps, for scale.
    from pipeline import jobs, train

    wrap(train, "fit", "train.fit", "job")
    wrap(cli, "run_gates", "run_gates (pytest, all gates)", "job")
    wrap(jobs, "train_and_log", "train_and_log", "job")


def last_json(text: str) -> dict:
    """The JSON document `run-pipeline --json` printed last (MLflow may print lines before it)."""
    starts = [i for i, line in enumerate(text.splitlines()) if line.startswith("{")]
    lines = text.splitlines()
    for i in reversed(starts):
        try:
            return json.loads("\n".join(lines[i:]))
        except json.JSONDecodeError:
            continue
    return {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--env", default="staging")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    instrument()
    sink = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        code = cli.main(["run", "--config", str(args.config), "--env", args.env, "--json"])
    job_s = time.perf_counter() - t
    doc = last_json(sink.getvalue())

    breakdown: dict[str, dict] = {}
    for name, s, _, root in CALLS:
        b = breakdown.setdefault(name, {"seconds": 0.0, "calls": 0, "outermost": set()})
        b["seconds"] += s
        b["calls"] += 1
        b["outermost"].add(root)
    # Registry calls inside train_and_log and run_gates count: those are the job's containers.
    # A registry call inside another one (model_digest inside log_candidate) counts once.
    mlflow_write = sum(s for n, s, nested, _ in CALLS if n.startswith("write:") and not nested)
    mlflow_read = sum(s for n, s, nested, _ in CALLS if n.startswith("read:") and not nested)
    gate_mlflow = sum(s for n, s, nested, _ in CALLS if n.startswith("gate:") and not nested)
    out = {
        "exit_code": code,
        "version": (doc.get("model") or {}).get("version"),
        "promotion": (doc.get("evidence") or {}).get("promotion"),
        "job_s": job_s,
        "import_mlflow_s": T_MLFLOW,
        "mlflow_write_s": mlflow_write,
        "mlflow_read_s": mlflow_read,
        "mlflow_total_s": mlflow_write + mlflow_read,
        "gate_mlflow_roundtrip_s": gate_mlflow,
        "breakdown": {
            k: {"seconds": round(v["seconds"], 4), "calls": v["calls"], "outermost": sorted(v["outermost"])}
            for k, v in sorted(breakdown.items(), key=lambda kv: -kv[1]["seconds"])
        },
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
