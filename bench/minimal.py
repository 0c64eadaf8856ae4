"""The lower bound: every gate's figure computed by hand, no pytest, no plugin, no MLflow.

    python bench/minimal.py --config PIPELINE_CONFIG --model MODEL.skops [--eval-data CSV] [--json]

The same work the gate run does for its figures, done once each: the data read and
contract-checked once, the same model loaded from its skops file (the file MLflow stored),
predicted once on the evaluation rows; overlap, drift, metrics, the champion bootstrap,
slices, residual statistics on the same seeded subsample, the same number of robustness
examples with one batched predict each (hypothesis's specs replaced by seeded draws of the
same shape), the determinism checks (two seeded refits, predict twice, a skops save/load
round trip, shuffled and chunked batches), 200 single-row predicts on one thread and 10
batch predicts of 1000 rows. Thresholds are judged too, so a failing figure is visible.

The champion is the model holding the environment's alias; in the benchmark that is the
gated version itself (its predictions are reused, as the gate session does).
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import skops.io  # noqa: E402
from sklearn.base import clone  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from pipeline import config as config_mod  # noqa: E402
from pipeline import data as data_mod  # noqa: E402
from pipeline import figures  # noqa: E402

T_IMPORTED = time.perf_counter()

# What the skops file may ask to trust (sklearn's own booster keeps a functools.partial of
# check_array in its internal preprocessor); anything else is refused.
SAFE_PREFIXES = ("sklearn.", "numpy.", "pipeline.", "builtins.", "scipy.", "collections.", "functools.partial")
MAX_EXAMPLES = 20  # the hypothesis profile's max_examples (conftest.py)
WIDER_NUMERIC = ("float64", "Float64")
WIDER_CATEGORICAL = ("object", "string", "category")


def load_model(path: Path):
    untrusted = skops.io.get_untrusted_types(file=path)
    unsafe = [t for t in untrusted if not t.startswith(SAFE_PREFIXES)]
    if unsafe:
        raise SystemExit(f"{path}: refusing to trust {unsafe}")
    return skops.io.load(path, trusted=untrusted)


class Clock:
    def __init__(self) -> None:
        self.s: dict[str, float] = {}

    def add(self, key: str, t0: float) -> float:
        now = time.perf_counter()
        self.s[key] = self.s.get(key, 0.0) + now - t0
        return now


def take(n_rows: int, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=min(rows, n_rows), replace=False))


def subset(rng: np.random.Generator, columns: list[str]) -> list[str]:
    k = int(rng.integers(1, len(columns) + 1))
    return sorted(rng.choice(columns, size=k, replace=False).tolist())


def run(config: Path, model_path: Path, eval_data: Path | None, env: str) -> dict:
    clk = Clock()
    out: dict = {"figures": {}, "passed": {}}
    fig, ok = out["figures"], out["passed"]

    t = time.perf_counter()
    settings = config_mod.load(config, env)
    th, g, seed, target = settings.thresholds, settings.gates, settings.seed, settings.data.target
    t = clk.add("config", t)

    # ---- data: read and contract-check once; split; evaluation rows
    dataset = data_mod.load(settings)
    parts = data_mod.split(settings, dataset)
    train, spec = parts.train, dataset.features
    if eval_data is None:
        evaluation = parts.eval
    else:
        evaluation, _ = data_mod.check_contract(data_mod.read_csv(eval_data), settings.data, eval_data)
    cols, num, cat = spec.columns, list(spec.numeric), list(spec.categorical)
    X = evaluation[cols]
    y = evaluation[target].to_numpy(float)
    fig["contract_violations"] = 0
    t = clk.add("load", t)

    model = load_model(model_path)
    t = clk.add("load_model", t)
    p = np.asarray(model.predict(X), float)
    t = clk.add("predict", t)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(frame), float)

    # ---- data family
    fig["train_eval_overlap"] = figures.shared_rows(train, evaluation, cols)
    drift = figures.feature_drift(train, evaluation, num, cat, g.drift.min_rows)
    fig["feature_drift"] = drift[0].statistic
    t = clk.add("data", t)

    # ---- metrics family
    m = figures.regression_metrics(y, p)
    fig.update(m)
    t = clk.add("metrics", t)

    # ---- champion family: the alias holder is the gated version, its predictions reused
    boot = figures.paired_bootstrap_mae(y, p, p, g.champion.bootstrap_resamples, g.champion.confidence, seed, g.champion.bootstrap_rows)
    fig["champion_mae_delta"] = boot.lower
    t = clk.add("champion", t)

    # ---- slices family
    slices = figures.slice_errors(evaluation, y, p, g.slices.columns, target, g.slices.target_bands, g.slices.min_rows, g.slices.metric)
    fig["slice_error_ratio"] = slices[0].ratio
    t = clk.add("slices", t)

    # ---- residuals family: same scale, same seeded subsample in data order
    resid = figures.residuals(y, p, g.residuals.scale)
    pred = np.log(p) if g.residuals.scale == "log" else p
    if len(resid) > g.residuals.sample_size:
        idx = np.sort(np.random.default_rng(seed).choice(len(resid), size=g.residuals.sample_size, replace=False))
        resid, pred = resid[idx], pred[idx]
    nrm = figures.normality(resid)
    fig["residual_skew"], fig["residual_excess_kurtosis"] = abs(nrm.skew), nrm.excess_kurtosis
    fig["residual_spread_ratio"] = figures.spread(resid, pred).ratio
    fig["durbin_watson"] = figures.autocorrelation(resid).durbin_watson
    t = clk.add("residuals", t)

    # ---- robustness family: MAX_EXAMPLES examples each, one batched predict per example
    r = g.robustness
    rng = np.random.default_rng(seed)
    scale = train[num].std().fillna(0.0)
    n = len(X)
    worst_noise, nonfinite, worst_dir, worst_order, worst_dtype = 0.0, 0, 0.0, 0.0, 0.0
    for _ in range(MAX_EXAMPLES):  # noise on numeric columns
        s = int(rng.integers(0, 2**31 - 1))
        idx = take(n, r.rows_per_example, s)
        rows = X.iloc[idx].copy()
        noise_rng = np.random.default_rng(s + 1)
        for col in subset(rng, num):
            rows[col] = rows[col] + noise_rng.normal(0.0, r.noise_relative_sd * float(scale[col]), size=len(rows))
        change = figures.relative_change(p[idx], predict(rows))
        worst_noise = max(worst_noise, float(np.percentile(change, r.percentile)))
    for _ in range(MAX_EXAMPLES):  # missing values in any column
        s = int(rng.integers(0, 2**31 - 1))
        rows = X.iloc[take(n, r.rows_per_example, s)].copy()
        hit = np.random.default_rng(s + 2).random(len(rows)) < float(rng.uniform(0.05, 1.0))
        hit[0] = True
        for col in subset(rng, cols):
            is_obj = rows[col].dtype == object
            values = rows[col].to_numpy(copy=True).astype(object if is_obj else float)
            values[hit] = None if is_obj else np.nan
            rows[col] = values
        nonfinite = max(nonfinite, int((~np.isfinite(predict(rows))).sum()))
    for _ in range(MAX_EXAMPLES):  # unseen categories
        s = int(rng.integers(0, 2**31 - 1))
        rows = X.iloc[take(n, r.rows_per_example, s)].copy()
        for i, col in enumerate(subset(rng, cat)):
            rows[col] = np.array([f"__unseen_{i}_{j % 3}__" for j in range(len(rows))], dtype=object)
        nonfinite = max(nonfinite, int((~np.isfinite(predict(rows))).sum()))
    for _ in range(MAX_EXAMPLES):  # column order, on a bounded sample of rows each
        idx = take(n, r.rows_per_example, int(rng.integers(0, 2**31 - 1)))
        order = list(np.random.default_rng(int(rng.integers(0, 2**31 - 1))).permutation(X.columns))
        worst_order = max(worst_order, figures.max_abs_difference(p[idx], predict(X.iloc[idx][order])))
    dtype_idx = take(n, r.rows_per_example, seed)
    for nt in WIDER_NUMERIC:  # wider dtypes: every combination (hypothesis exhausts the six), one bounded sample
        for ct in WIDER_CATEGORICAL:
            wider = X.iloc[dtype_idx].copy()
            for col in num:
                wider[col] = wider[col].astype(nt)
            for col in cat:
                wider[col] = wider[col].astype(ct)
            worst_dtype = max(worst_dtype, figures.max_abs_difference(p[dtype_idx], predict(wider)))
    for exp in r.directional:
        sign = 1 if exp.direction == "increasing" else -1
        for _ in range(MAX_EXAMPLES):
            s = int(rng.integers(0, 2**31 - 1))
            step = float(rng.uniform(exp.step_relative / 10, exp.step_relative))
            idx = take(n, r.rows_per_example, s)
            rows = X.iloc[idx].copy()
            x = rows[exp.feature].to_numpy(float)
            rows[exp.feature] = x + np.where(np.abs(x) > 0, np.abs(x) * step, float(scale[exp.feature]) * step)
            before = p[idx]
            against = np.maximum(0.0, -sign * (predict(rows) - before)) / np.abs(before)
            worst_dir = max(worst_dir, float(against.max()))
    fig.update(noise_prediction_change=worst_noise, nonfinite_predictions=nonfinite, directional_drop=worst_dir,
               column_order_difference=worst_order, wider_dtypes_difference=worst_dtype)
    t = clk.add("robustness", t)

    # ---- determinism family: compared on at most compare_rows evaluation rows (seeded)
    k = min(len(train), g.determinism.refit_rows)
    sample = train.sample(n=k, random_state=seed)
    Xs, ys = sample[cols], sample[target]
    limit = g.determinism.compare_rows
    at = np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    Xc, pc, nc = X.iloc[at], p[at], len(at)
    first = clone(model).fit(Xs, ys).predict(Xc)
    second = clone(model).fit(Xs, ys).predict(Xc)
    refit = figures.max_abs_difference(first, second)
    twice = figures.max_abs_difference(pc, predict(Xc))
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    loaded = skops.io.loads(skops.io.dumps(model), trusted=trusted)
    roundtrip = figures.max_abs_difference(pc, np.asarray(loaded.predict(Xc), float))
    brng = np.random.default_rng(seed)
    order = brng.permutation(nc)
    shuffled = np.empty(nc)
    shuffled[order] = predict(Xc.iloc[order])
    cuts = np.sort(brng.choice(np.arange(1, nc), size=min(7, nc - 1), replace=False))
    bounds = [0, *cuts.tolist(), nc]
    chunked = np.concatenate([predict(Xc.iloc[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
    batch = max(figures.max_abs_difference(pc, shuffled), figures.max_abs_difference(pc, chunked))
    fig.update(refit_difference=refit, predict_twice_difference=twice, roundtrip_difference=roundtrip, batch_difference=batch)
    t = clk.add("determinism", t)

    # ---- latency family: single rows on one thread, then 1000-row batches
    rounds = g.latency.single_row_rounds
    picks = np.random.default_rng(seed).integers(0, n, size=rounds + 10)
    times = []
    with threadpool_limits(limits=1, user_api="openmp"):
        for i in picks[:rounds]:
            row = X.iloc[[int(i)]]
            t0 = time.perf_counter()
            model.predict(row)
            times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    fig["single_row_p99_ms"] = float(np.percentile(ms, 99))
    out["single_row_p50_ms"] = float(np.percentile(ms, 50))
    bn = g.latency.batch_rows
    batch_rows = X.sample(n=bn, replace=n < bn, random_state=seed)
    btimes = []
    for _ in range(10):
        t0 = time.perf_counter()
        model.predict(batch_rows)
        btimes.append(time.perf_counter() - t0)
    fig["batch_throughput"] = bn / float(np.median(btimes))
    t = clk.add("latency", t)

    # ---- judge every figure that has a threshold
    for name in ("contract_violations", "train_eval_overlap", "feature_drift", "r2", "mae", "rmse", "mape",
                 "champion_mae_delta", "slice_error_ratio", "residual_skew", "residual_excess_kurtosis",
                 "residual_spread_ratio", "durbin_watson", "noise_prediction_change", "nonfinite_predictions",
                 "directional_drop", "single_row_p99_ms", "batch_throughput"):
        thr = getattr(th, name)
        ok[name] = bool(thr.holds(fig[name])) if thr is not None else None
    for name in ("column_order_difference", "wider_dtypes_difference", "refit_difference", "predict_twice_difference",
                 "roundtrip_difference", "batch_difference"):
        ok[name] = bool(th.prediction_difference.holds(fig[name]))
    out["rows"] = {"train": len(train), "eval": n}
    out["timings_s"] = {k: round(v, 4) for k, v in clk.s.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True, help="the model's skops file")
    ap.add_argument("--eval-data", type=Path, default=None)
    ap.add_argument("--env", default="staging")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    out = run(args.config, args.model, args.eval_data, args.env)
    out["import_s"] = round(T_IMPORTED - T_START, 4)
    out["in_process_s"] = round(time.perf_counter() - T_START, 4)
    out["all_passed"] = all(v is not False for v in out["passed"].values())
    if args.json:
        print(json.dumps(out, default=float))
    else:
        for k, v in out["figures"].items():
            print(f"{k:28s} {v:.6g}  {'ok' if out['passed'].get(k) is not False else 'FAIL'}")
        print("timings:", out["timings_s"], "import", out["import_s"], "total", out["in_process_s"])
    return 0 if out["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
