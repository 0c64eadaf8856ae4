"""MLflow's own evaluation: mlflow.models.evaluate(model_type="regressor") + validate_evaluation_results.

    python bench/mlflow_eval.py --config PIPELINE_CONFIG --model-uri models:/NAME/VERSION [--json]

On the same registered model and the same evaluation rows as the gate run (the seeded
held-out split, contract-checked by pipeline.data), in a run of the same embedded store.
The thresholds are the environment's R2, MAE, RMSE and MAPE thresholds (MLflow's MAPE is
a fraction, the config's is in percent). MLflow 3.17 names: mlflow.models.evaluate,
mlflow.validate_evaluation_results(validation_thresholds, candidate_result, baseline_result),
mlflow.models.MetricThreshold.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import mlflow  # noqa: E402
from mlflow.models import MetricThreshold  # noqa: E402

from pipeline import config as config_mod  # noqa: E402
from pipeline import data as data_mod  # noqa: E402

T_IMPORTED = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--model-uri", required=True)
    ap.add_argument("--env", default="staging")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    settings = config_mod.load(args.config, args.env)
    dataset = data_mod.load(settings)
    evaluation = data_mod.split(settings, dataset).eval
    frame = evaluation[[*dataset.features.columns, settings.data.target]]
    timings["load"] = time.perf_counter() - t
    t = time.perf_counter()
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.tracking_uri)
    mlflow.set_experiment(settings.mlflow.experiment)
    th = settings.thresholds
    with mlflow.start_run(run_name="bench-mlflow-evaluate"):
        result = mlflow.models.evaluate(
            model=args.model_uri,
            data=frame,
            targets=settings.data.target,
            model_type="regressor",
            evaluators=["default"],
        )
        timings["evaluate"] = time.perf_counter() - t
        t = time.perf_counter()
        thresholds = {
            "r2_score": MetricThreshold(threshold=float(th["r2"].min), greater_is_better=True),
            "mean_absolute_error": MetricThreshold(threshold=float(th["mae"].max), greater_is_better=False),
            "root_mean_squared_error": MetricThreshold(threshold=float(th["rmse"].max), greater_is_better=False),
            "mean_absolute_percentage_error": MetricThreshold(
                threshold=float(th["mape"].max) / 100, greater_is_better=False
            ),
        }
        passed = True
        try:
            mlflow.validate_evaluation_results(thresholds, result)
        except mlflow.exceptions.MlflowException as e:  # ModelValidationFailedException
            passed, message = False, str(e).splitlines()[0]
        timings["validate"] = time.perf_counter() - t
    out = {
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "passed": passed,
        "rows": len(frame),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "import_s": round(T_IMPORTED - T_START, 4),
        "in_process_s": round(time.perf_counter() - T_START, 4),
    }
    if not passed:
        out["message"] = message
    print(json.dumps(out) if args.json else out)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
