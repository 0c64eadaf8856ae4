"""Single-row latency in one process: the raw sklearn pipeline, the MLflow pyfunc model, and each step.

    python bench/latency.py --config PIPELINE_CONFIG --model-uri models:/NAME/VERSION [--rounds 1000] [--json]
        [--pyinstrument OUT.txt]

Both models are loaded from the same registered version (mlflow.sklearn.load_model and
mlflow.pyfunc.load_model) and asked the same rows in alternating order, on one OpenMP
thread as the latency gate does. The step split times each part of the pipeline on the
same rows: preprocessing, the target transformer, the booster's categorical codes and its
trees; and the same for the sklearn-only design the model had before (ColumnTransformer with
pandas output + HistGradientBoostingRegressor, fitted here on the same rows), for comparison.
With --pyinstrument, a statistical profile of 300 single-row predicts is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits


def pct(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "n": len(a),
    }


def timed(fn, rows, repeat: int = 1) -> list[float]:
    out = []
    for r in rows:
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn(r)
        out.append((time.perf_counter() - t0) * 1000 / repeat)
    return out


def step_split(model, rows) -> dict[str, dict[str, float]]:
    """Per-step single-row times of the registered Pipeline(preprocess, regressor)."""
    steps: dict[str, dict[str, float]] = {}
    total = pct(timed(model.predict, rows))
    steps["pipeline.predict (total)"] = total
    pre, reg = model[:-1], model[-1]
    transformed = [pre.transform(r) for r in rows]
    steps[f"preprocess.transform ({type(pre[-1]).__name__})"] = pct(timed(pre.transform, rows))
    subs = getattr(pre[-1], "transformers_", None)
    if subs:  # a ColumnTransformer: each part on its own columns
        for name, tr, cols in subs:
            if tr in ("drop", "passthrough") or not len(cols):
                continue
            steps[f"  {name} ({type(tr).__name__}, {len(cols)} columns)"] = pct(
                timed(lambda r, tr=tr, cols=cols: tr.transform(r[cols]), rows)
            )
    steps[f"regressor.predict ({type(reg).__name__})"] = pct(timed(reg.predict, transformed))
    inner = getattr(reg, "regressor_", reg)
    steps[f"  regressor_.predict ({type(inner).__name__})"] = pct(timed(inner.predict, transformed))
    if getattr(inner, "_preprocessor", None) is not None:
        # The booster's categorical re-encoding: sklearn's ColumnTransformer, or the coded booster's searchsorted.
        fast = type(inner).__name__ != "HistGradientBoostingRegressor"
        label = (
            "searchsorted per column (_preprocess_X)"
            if fast
            else "internal ColumnTransformer (_preprocessor.transform)"
        )
        encode = (lambda z: inner._preprocess_X(z, reset=False)) if fast else inner._preprocessor.transform
        steps[f"    categorical re-encoding: {label}"] = pct(timed(encode, transformed))
        encoded = [encode(z) for z in transformed]

        def per_tree(z):
            raw = np.zeros((z.shape[0], 1), order="F")
            inner._predict_iterations(z, inner._predictors, raw, False, 1)

        steps["    one Cython call per tree (_predict_iterations)"] = pct(timed(per_tree, encoded))
    if hasattr(inner, "_predictors"):
        steps["trees"] = {
            "count": len(inner._predictors),
            "nodes": int(sum(len(p.nodes) for (p, *_) in inner._predictors)),
        }
    return steps


def sklearn_design(settings, dataset, split):
    """The default model as it was built before bench/: ColumnTransformer with pandas output
    (numeric passthrough + OrdinalEncoder) in front of sklearn's HistGradientBoostingRegressor,
    fitted here on the same training rows, for the per-step comparison."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from pipeline import train

    spec = dataset.features
    ct = ColumnTransformer(
        [
            ("num", "passthrough", list(spec.numeric)),
            (
                "cat",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan),
                list(spec.categorical),
            ),
        ],
        verbose_feature_names_out=False,
        remainder="drop",
    )
    ct.set_output(transform="pandas")
    params = train.build(settings, spec)[-1].regressor.get_params()
    reg = TransformedTargetRegressor(
        regressor=HistGradientBoostingRegressor(**params), func=np.log, inverse_func=np.exp, check_inverse=False
    )
    model = Pipeline([("preprocess", ct), ("regressor", reg)])
    return model.fit(split.train[spec.columns], split.train[settings.data.target])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--model-uri", required=True)
    ap.add_argument("--env", default="staging")
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--pyinstrument", type=Path, default=None)
    ap.add_argument(
        "--no-sklearn-design", action="store_true", help="skip the per-step times of the sklearn-only design"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    import mlflow.pyfunc
    import mlflow.sklearn

    from pipeline import config as config_mod
    from pipeline import data as data_mod

    settings = config_mod.load(args.config, args.env)
    dataset = data_mod.load(settings)
    split = data_mod.split(settings, dataset)
    X = split.eval[dataset.features.columns]
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.tracking_uri)
    raw = mlflow.sklearn.load_model(args.model_uri)
    pyfunc = mlflow.pyfunc.load_model(args.model_uri)
    picks = np.random.default_rng(settings.seed).integers(0, len(X), size=args.rounds + 20)
    rows = [X.iloc[[int(i)]] for i in picks]
    out: dict = {"rounds": args.rounds, "model_uri": args.model_uri}
    with threadpool_limits(limits=1, user_api="openmp"):
        for r in rows[:20]:  # warm-up: lazy imports and first-call caches
            raw.predict(r)
            pyfunc.predict(r)
        t_raw, t_py = [], []
        for k, r in enumerate(rows[20:]):
            pair = [(raw.predict, t_raw), (pyfunc.predict, t_py)]
            for fn, sink in pair if k % 2 == 0 else pair[::-1]:
                t0 = time.perf_counter()
                fn(r)
                sink.append((time.perf_counter() - t0) * 1000)
        out["raw_sklearn"] = pct(t_raw)
        out["pyfunc"] = pct(t_py)
        out["pyfunc_over_raw_p99"] = out["pyfunc"]["p99_ms"] / out["raw_sklearn"]["p99_ms"]
        out["pyfunc_over_raw_p50"] = out["pyfunc"]["p50_ms"] / out["raw_sklearn"]["p50_ms"]
        same = np.allclose(np.asarray(pyfunc.predict(X), float), raw.predict(X), rtol=0, atol=0)
        out["pyfunc_equals_raw"] = bool(same)
        out["steps"] = step_split(raw, rows[20:320])
        if not args.no_sklearn_design:
            reference = sklearn_design(settings, dataset, split)
            out["sklearn_design_same_predictions"] = bool(np.array_equal(reference.predict(X), raw.predict(X)))
            out["steps_sklearn_design"] = step_split(reference, rows[20:320])
        if args.pyinstrument:
            from pyinstrument import Profiler

            prof = Profiler(interval=0.0001)
            prof.start()
            for r in rows[20:320]:
                raw.predict(r)
            prof.stop()
            args.pyinstrument.parent.mkdir(parents=True, exist_ok=True)
            args.pyinstrument.write_text(prof.output_text(unicode=False, color=False, show_all=True))
            out["pyinstrument"] = str(args.pyinstrument)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
