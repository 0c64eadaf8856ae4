"""The lower bound: every gate's figure from the gates' own specs, without a pytest session.

    python bench/minimal.py --config PIPELINE_CONFIG [--model MODEL.skops] [--eval-data CSV]
                            [--env ENV] [--champion self|none] [--json]

The same work the gate run does for its figures, done once each, through the same wires
(pipeline.catalogue: each gate's choice of rows, settings and baseline lives in its spec)
and judged by the same judge (pipeline.judge) on the same session (pipeline.session): the
data read and contract-checked once, the model loaded from its skops file (the file MLflow
stored; without --model, fitted in process as a gate run without --model-uri does),
predicted once. What it leaves out is the harness around the figures: pytest, the plugin,
the evidence, the report and the registry. The serving family needs a model server and is
not run; the MLflow round trip is (it is one of the gates' figures).

The champion: `self` (default) is the gated version itself holding the alias (its
predictions reused, as the gate session does); `none` is no champion (the gates' not
applicable, as on a fresh store).
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import skops.io  # noqa: E402
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

from pipeline import catalogue  # noqa: E402
from pipeline import config as config_mod  # noqa: E402
from pipeline.judge import judge  # noqa: E402
from pipeline.session import GateSession  # noqa: E402
from pipeline.teardown import fast_interpreter_exit  # noqa: E402

# The lower bound ends as a gate run does: without the interpreter tracing its heap at teardown.
fast_interpreter_exit()
T_IMPORTED = time.perf_counter()

# What the skops file may ask to trust (sklearn's own booster keeps a functools.partial of
# check_array in its internal preprocessor); anything else is refused.
SAFE_PREFIXES = ("sklearn.", "numpy.", "pipeline.", "builtins.", "scipy.", "collections.", "functools.partial")
# The repository's hypothesis profile "ci" (conftest.py): the same examples as a CI gate run.
hypothesis_settings.register_profile(
    "bench",
    derandomize=True,
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SKIPPED_FAMILIES = ("serving",)


def load_model(path: Path) -> Any:
    untrusted = skops.io.get_untrusted_types(file=path)
    unsafe = [t for t in untrusted if not t.startswith(SAFE_PREFIXES)]
    if unsafe:
        raise SystemExit(f"{path}: refusing to trust {unsafe}")
    return skops.io.load(path, trusted=untrusted)


def run(config: Path, model_path: Path | None, eval_data: Path | None, env: str, champion: str = "self") -> dict:
    hypothesis_settings.load_profile("bench")
    t = time.perf_counter()
    settings = config_mod.load(config, env)
    model = load_model(model_path) if model_path is not None else None
    session = GateSession(settings, eval_data=eval_data, model=model, champion=None if champion == "none" else "self")
    out: dict[str, Any] = {
        "figures": {},
        "passed": {},
        "verdicts": {},
        "timings_s": {"config": time.perf_counter() - t},
    }
    with tempfile.TemporaryDirectory(prefix="minimal-") as tmp:
        for gate in catalogue.standard(settings.data.task):
            threshold = settings.thresholds.get(gate.id)
            if gate.family in SKIPPED_FAMILIES or threshold is None:
                continue
            t = time.perf_counter()
            found = gate.run(catalogue.Inputs(session, threshold, tmp_path=Path(tmp) / gate.id))
            if isinstance(found, catalogue.NotApplicable):
                out["figures"][gate.id], out["passed"][gate.id], out["verdicts"][gate.id] = None, None, "not_applicable"
            else:
                verdict = judge(threshold, found)
                out["figures"][gate.id], out["passed"][gate.id], out["verdicts"][gate.id] = (
                    found.value,
                    verdict.passed,
                    verdict.outcome,
                )
                if gate.id == "single_row_latency":
                    out["single_row_p50_ms"] = found.reported["single_row_p50_ms"]
                    out["single_row_ratio_to_reference"] = found.reported["ratio_to_reference"]
            out["timings_s"][gate.family] = out["timings_s"].get(gate.family, 0.0) + time.perf_counter() - t
    out["rows"] = {"train": len(session.train_frame), "eval": len(session.eval_frame)}
    out["timings_s"] = {k: round(v, 4) for k, v in out["timings_s"].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None, help="the model's skops file (default: fit it in process)")
    ap.add_argument("--eval-data", type=Path, default=None)
    ap.add_argument("--env", default="staging")
    ap.add_argument("--champion", choices=("self", "none"), default="self")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    out = run(args.config, args.model, args.eval_data, args.env, args.champion)
    out["import_s"] = round(T_IMPORTED - T_START, 4)
    out["in_process_s"] = round(time.perf_counter() - T_START, 4)
    out["all_passed"] = all(v is not False for v in out["passed"].values())
    if args.json:
        print(json.dumps(out, default=float))
    else:
        for k, v in out["figures"].items():
            print(f"{k:28s} {'-' if v is None else format(v, '.6g'):>12}  {out['verdicts'][k]}")
        print("timings:", out["timings_s"], "import", out["import_s"], "total", out["in_process_s"])
    return 0 if out["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
