"""The lower bound: every gate's figure from the same checks, no pytest, no plugin, no MLflow.

    python bench/minimal.py --config PIPELINE_CONFIG --model MODEL.skops [--eval-data CSV] [--json]

The same work the gate run does for its figures, done once each, through the same
functions (pipeline.checks) on the same rows: the data read and
contract-checked once, the same model loaded from its skops file (the file MLflow stored),
predicted once on the evaluation rows; overlap, drift, metrics, the champion bootstrap,
slices, residual statistics on the same seeded subsample, the same number of robustness
examples with one batched predict each (hypothesis's specs replaced by seeded draws of the
same shape), the determinism checks (a refit compared with the model, or two on a sample; predict twice, a skops save/load
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
from threadpoolctl import threadpool_limits  # noqa: E402

from pipeline import config as config_mod  # noqa: E402
from pipeline import data as data_mod  # noqa: E402
from pipeline import checks  # noqa: E402
from pipeline import robustness as rb  # noqa: E402
from pipeline import timing  # noqa: E402
from pipeline.teardown import fast_interpreter_exit  # noqa: E402

# The lower bound ends as a gate run does: without the interpreter tracing its heap at teardown.
fast_interpreter_exit()
T_IMPORTED = time.perf_counter()

# What the skops file may ask to trust (sklearn's own booster keeps a functools.partial of
# check_array in its internal preprocessor); anything else is refused.
SAFE_PREFIXES = ("sklearn.", "numpy.", "pipeline.", "builtins.", "scipy.", "collections.", "functools.partial")
MAX_EXAMPLES = 20  # the hypothesis profile's max_examples (conftest.py)


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


def subset(rng: np.random.Generator, columns: list[str]) -> list[str]:
    k = int(rng.integers(1, len(columns) + 1))
    return sorted(rng.choice(columns, size=k, replace=False).tolist())


def run(config: Path, model_path: Path, eval_data: Path | None, env: str) -> dict:
    clk = Clock()
    out: dict = {"figures": {}, "passed": {}}
    findings: dict[str, checks.Finding] = {}

    t = time.perf_counter()
    settings = config_mod.load(config, env)
    g, seed, target = settings.gates, settings.seed, settings.data.target
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
    findings["data_contract"] = checks.data_contract(None, len(evaluation), str(eval_data or settings.data.path))
    t = clk.add("load", t)

    model = load_model(model_path)
    t = clk.add("load_model", t)
    p = np.asarray(model.predict(X), float)
    t = clk.add("predict", t)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(frame), float)

    # ---- data family
    record, what = data_mod.record_columns(evaluation, cols, target, settings.data.id_columns)
    findings["train_eval_overlap"] = checks.train_eval_overlap(train, evaluation, record, what=what, grouped=parts.grouped)
    findings["feature_drift"] = checks.feature_drift(train, evaluation, num, cat, g.drift.min_rows)
    findings["target_leak"] = checks.target_leak(train, evaluation, cols, target, log=settings.model.log_target)
    t = clk.add("data", t)

    # ---- metrics family
    for name in ("r2", "mae", "rmse", "mape"):
        findings[name] = getattr(checks, name)(y, p)
    t = clk.add("metrics", t)

    # ---- champion family: the alias holder is the gated version, its predictions reused
    c = g.champion
    findings["champion_mae"] = checks.champion_mae(y, p, p, champion="itself", resamples=c.bootstrap_resamples, confidence=c.confidence,
                                                   seed=seed, max_rows=c.bootstrap_rows)
    t = clk.add("champion", t)

    # ---- slices family
    sl = g.slices
    findings["slice_error"] = checks.slice_error(evaluation, y, p, columns=sl.columns, target=target, target_bands=sl.target_bands,
                                                 min_rows=sl.min_rows, metric=sl.metric, band_by=sl.band_by)
    t = clk.add("slices", t)

    # ---- residuals family: the same seeded samples the gate session draws, the autocorrelation's
    # of the rows in their declared order (not applicable without one, as in the gate)
    rs = g.residuals
    sample = checks.residual_sample(y, p, rs.scale, rs.sample_size, seed, rs.censored)
    for name in ("residual_skew", "residual_kurtosis", "residual_spread"):
        findings[name] = getattr(checks, name)(sample)
    if rs.order_by:
        order = checks.in_order(evaluation, rs.order_by)
        findings["residual_autocorrelation"] = checks.residual_autocorrelation(
            checks.residual_sample(y[order], p[order], rs.scale, rs.sample_size, seed, rs.censored), order=", ".join(rs.order_by))
    t = clk.add("residuals", t)

    # ---- robustness family: MAX_EXAMPLES examples each, one batched predict per example; the
    # gates' perturbation specs, drawn from a seeded generator instead of hypothesis
    r = g.robustness
    rng = np.random.default_rng(seed)
    scale = train[num].std().fillna(0.0)
    n = len(X)

    def draw() -> rb.RowSample:
        return rb.RowSample(int(rng.integers(0, 2**31 - 1)), r.rows_per_example)

    def worst(found: list[checks.Finding]) -> checks.Finding:
        return max(found, key=lambda f: f.value)

    # The noise gate: one fixed seeded sample, every numeric feature at once (as the gate does).
    noise_sd, how = rb.noise_scale(train, num, r)
    ns = rb.NoiseSpec(rb.RowSample(seed, r.noise_rows), tuple(num), how)
    at = ns.sample.positions(n)
    findings["noise_stability"] = checks.noise_stability(p[at], predict(ns.apply(X.iloc[at], noise_sd)), percentile=r.percentile, spec=ns)
    masked = [rb.MaskSpec(draw(), tuple(subset(rng, cols)), float(rng.uniform(0.05, 1.0))) for _ in range(MAX_EXAMPLES)]
    findings["missing_values"] = worst([checks.missing_values(predict, ms.apply(ms.sample.take(X)), ms) for ms in masked])
    unseen = [rb.UnseenSpec(draw(), tuple(subset(rng, cat))) for _ in range(MAX_EXAMPLES)]
    findings["unseen_categories"] = worst([checks.unseen_categories(predict, us.apply(us.sample.take(X)), us) for us in unseen])
    order = []
    for _ in range(MAX_EXAMPLES):
        at = draw().positions(n)
        order.append(checks.column_order(model, X.iloc[at], p[at], int(rng.integers(0, 2**31 - 1))))
    findings["column_order"] = worst(order)
    dtype_at = rb.RowSample(seed, r.rows_per_example).positions(n)
    wider = [rb.DtypeSpec(nt, ct) for nt in rb.WIDER_NUMERIC for ct in rb.WIDER_CATEGORICAL]  # hypothesis exhausts the six
    findings["wider_dtypes"] = worst([checks.wider_dtypes(model, ds.apply(X.iloc[dtype_at], num, cat), p[dtype_at], ds) for ds in wider])
    shifted = []
    for exp in r.directional:
        for _ in range(MAX_EXAMPLES):
            ss = rb.ShiftSpec(draw(), exp.feature, float(rng.uniform(exp.step_relative / 10, exp.step_relative)))
            at = ss.sample.positions(n)
            after = predict(ss.apply(X.iloc[at], float(scale[exp.feature]), +1))
            shifted.append(checks.directional(p[at], after, direction=exp.direction, feature=exp.feature, spec=ss))
    if shifted:
        findings["directional"] = worst(shifted)
    t = clk.add("robustness", t)

    # ---- determinism family: compared on at most compare_rows evaluation rows (seeded)
    at = rb.RowSample(seed, g.determinism.compare_rows).positions(n)
    Xc, pc = X.iloc[at], p[at]
    findings["refit_identical"] = checks.refit_identical(model, train[cols], train[target], Xc, pc,
                                                         refit_rows=g.determinism.refit_rows, seed=seed)
    findings["predict_twice_identical"] = checks.predict_twice_identical(model, Xc, pc)
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    loaded = skops.io.loads(skops.io.dumps(model), trusted=trusted)
    findings["mlflow_roundtrip_identical"] = checks.mlflow_roundtrip_identical(loaded, Xc, pc, "skops dump and load")
    findings["batch_independent"] = checks.batch_independent(model, Xc, pc, seed)
    t = clk.add("determinism", t)

    # ---- latency family: single rows on one thread (the reference workload between them, as the
    # gate times them), then batches; the champion (the gated version itself) in the same rounds
    lat = g.latency
    picks = iter(np.random.default_rng(seed).integers(0, n, size=3 * lat.single_row_rounds + 10).tolist())

    def one_row():
        return (X.iloc[[next(picks)]],)

    with threadpool_limits(limits=1, user_api="openmp"):
        # One set of rounds for both single-row gates, the champion's predict in them (as the gates).
        r = timing.interleaved(model.predict, one_row, lat.single_row_rounds, other=model.predict)
        findings["single_row_latency"] = checks.single_row_latency(r, confidence=lat.confidence, seed=seed)
        findings["latency_vs_champion"] = checks.latency_vs_champion(r, champion="itself", confidence=lat.confidence, seed=seed)
    out["single_row_p50_ms"] = findings["single_row_latency"].reported["single_row_p50_ms"]
    out["single_row_ratio_to_reference"] = findings["single_row_latency"].reported["ratio_to_reference"]
    batch_rows = X.sample(n=lat.batch_rows, replace=n < lat.batch_rows, random_state=seed)
    model.predict(batch_rows)
    r = timing.interleaved(model.predict, lambda: (batch_rows,), lat.batch_rounds)
    findings["batch_throughput"] = checks.batch_throughput(r, lat.batch_rows, confidence=lat.confidence, seed=seed)
    t = clk.add("latency", t)

    # ---- judge every figure against the environment's threshold for its gate
    for name, f in findings.items():
        out["figures"][name] = f.value
        th = settings.thresholds.get(name)
        if th is not None and name in checks.TIMING_GATES:
            out["passed"][name] = checks.timing_verdict(th, f, relative=checks.TIMING_GATES[name]).outcome == "passed"
        else:
            out["passed"][name] = bool(th.holds(f.value)) if th is not None else None
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
