"""Benchmark runner: the gate run against its lower bound and against MLflow's own evaluation.

    python bench/run.py                       # 5 rounds of (a), (b), (c) on Ames, then latency and MLflow overhead
    python bench/run.py --runs 7
    python bench/run.py --scale 10000 100000 1000000 --skip-main     # the gate families at scale only

(a) the whole gate run: `pytest model_tests -m gates --model-uri models:/NAME/VERSION --env staging
    --promote`, every family, evidence and promotion on an embedded store in a temp folder;
(b) bench/minimal.py: the same figures from the gates' own specs, no pytest session, no plugin, no registry;
(c) bench/mlflow_eval.py: mlflow.models.evaluate(model_type="regressor") + validate_evaluation_results.

Each is a fresh subprocess timed wall-clock (interpreter start and imports included), run in
rotating order within a round so that a change in machine load hits all three alike. Medians
over the rounds are printed and written to bench/results/<stamp>.json (git-ignored). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PY = sys.executable
# Gate families run at scale (serving is skipped at staging: it does nothing there).
SCALE_FAMILIES = ("data", "metrics", "champion", "slices", "residuals", "robustness", "determinism", "latency")
KINDS = {
    "a": "(a) gate run (pytest + plugin + MLflow)",
    "b": "(b) minimal script (lower bound)",
    "c": "(c) mlflow.models.evaluate + validate",
}
TARGETS = {
    "ab": 1.3,
    "ac": 1.0,
    "single_row_p99_ms": 10.0,
    "mlflow_overhead_s": 3.0,
    "growth": 12.0,
    "rss_1m_mb": 2048.0,
    "pyfunc_ratio": 1.2,
}
CLEAN_ENV = dict(os.environ)


# ---------------------------------------------------------------- setup


def write_project(folder: Path) -> Path:
    """A copy of the Ames config in `folder` with its own embedded store (tests/conftest.py's)."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import write_project as write

    return write(folder)


def child_env(omp: str | None, write_bytecode: bool = False) -> dict[str, str]:
    env = dict(CLEAN_ENV)
    if write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    for k in ("MLFLOW_TRACKING_URI", "PIPELINE_CONFIG", "MLFLOW_REGISTRY_URI"):
        env.pop(k, None)
    # The CI hypothesis profile: the same 20 examples per gate every run, no example database.
    env["HYPOTHESIS_PROFILE"] = "ci"
    env.setdefault("PYTHONHASHSEED", "0")
    if omp:
        env["OMP_NUM_THREADS"] = omp
    return env


def prepare(folder: Path, log) -> dict[str, Any]:
    """Train and register one version on a temp store; export its skops file for (b)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from pipeline import config as config_mod
    from pipeline import jobs

    cfg = write_project(folder / "project")
    settings = config_mod.load(cfg, "staging")
    t = time.perf_counter()
    trained = jobs.train_and_log(settings, progress=lambda step: log(f"  prepare: {step}"))
    train_s = time.perf_counter() - t
    c = trained.candidate

    import mlflow.artifacts
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.tracking_uri)
    where = client.get_model_version_download_uri(c.name, c.version)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=where, dst_path=str(folder / "export")))
    skops_file = next(local.rglob("*.skops"))
    return {
        "config": str(cfg),
        "uri": c.uri,
        "name": c.name,
        "version": c.version,
        "skops": str(skops_file),
        "train_and_log_s": train_s,
        "metrics": trained.metrics,
    }


# ---------------------------------------------------------------- running one thing


def run_child(
    cmd: list[str], env: dict[str, str], out: Path, cwd: Path = ROOT, timeout: float = 7200
) -> dict[str, Any]:
    """Run cmd; wall time, exit code, CPU time and peak RSS of the child (os.wait4)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as so, open(out.with_suffix(".err"), "w") as se:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=so, stderr=se, stdin=subprocess.DEVNULL)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": wall,
        "exit": proc.returncode,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "maxrss_mb": ru.ru_maxrss / 1024,
        "stdout": str(out),
    }


def gate_cmd(
    prep: dict[str, Any],
    evidence_dir: Path,
    *,
    promote: bool,
    marker: str = "gates",
    eval_data: Path | None = None,
    wrapper: bool = False,
) -> list[str]:
    head = [PY, str(BENCH / "pytest_rss.py")] if wrapper else [PY, "-m", "pytest"]
    cmd = head + [
        "model_tests",
        "-m",
        marker,
        "--model-uri",
        prep["uri"],
        "--env",
        "staging",
        "--pipeline-config",
        prep["config"],
        "--evidence-dir",
        str(evidence_dir),
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    if promote:
        cmd.append("--promote")
    if eval_data is not None:
        cmd += ["--eval-data", str(eval_data)]
    return cmd


def evidence_of(evidence_dir: Path) -> dict[str, Any]:
    files = sorted(evidence_dir.glob("evidence-*.json"))
    return json.loads(files[-1].read_text()) if files else {}


def family_split(doc: dict[str, Any]) -> dict[str, float]:
    split: dict[str, float] = {}
    for g in doc.get("gates", []):
        split[g["family"]] = split.get(g["family"], 0.0) + float(g.get("duration_s") or 0.0)
    return split


def figures_of(doc: dict[str, Any]) -> dict[str, float]:
    out = {}
    for g in doc.get("gates", []):
        f = g.get("figure") or {}
        if f.get("value") is not None:
            out[g["gate"]] = f["value"]
    return out


def run_a(prep, tmp: Path, tag: str, env) -> dict[str, Any]:
    ev = tmp / f"evidence-{tag}"
    r = run_child(gate_cmd(prep, ev, promote=True), env, tmp / "logs" / f"a-{tag}.out")
    doc = evidence_of(ev)
    r["status"] = doc.get("status")
    r["families_s"] = family_split(doc)
    r["gates_s"] = sum(r["families_s"].values())
    r["outside_gates_s"] = r["wall_s"] - r["gates_s"]
    r["session_timings_s"] = doc.get("timings_s", {})
    r["figures"] = figures_of(doc)
    r["single_row_p99_ms"] = r["figures"].get("single_row_latency")
    lat = next((g.get("reported") or {} for g in doc.get("gates", []) if g["gate"] == "single_row_latency"), {})
    r["single_row_ratio_to_reference"] = lat.get("ratio_to_reference")
    r["wait_share"] = lat.get("wait_share")
    r["latency_outcomes"] = {g["gate"]: g["outcome"] for g in doc.get("gates", []) if g["family"] == "latency"}
    shutil.rmtree(ev, ignore_errors=True)
    return r


def run_json(cmd: list[str], env, out: Path, cwd: Path = ROOT) -> dict[str, Any]:
    r = run_child(cmd, env, out, cwd=cwd)
    try:
        r["doc"] = json.loads(Path(out).read_text().strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        r["doc"] = {}
        r["error"] = Path(out.with_suffix(".err")).read_text()[-2000:]
    return r


def run_b(prep, tmp: Path, tag: str, env) -> dict[str, Any]:
    r = run_json(
        [PY, str(BENCH / "minimal.py"), "--config", prep["config"], "--model", prep["skops"], "--json"],
        env,
        tmp / "logs" / f"b-{tag}.out",
    )
    d = r.pop("doc")
    r.update(
        families_s=d.get("timings_s", {}),
        figures=d.get("figures", {}),
        all_passed=d.get("all_passed"),
        in_process_s=d.get("in_process_s"),
        import_s=d.get("import_s"),
        single_row_p50_ms=d.get("single_row_p50_ms"),
    )
    r["single_row_p99_ms"] = r["figures"].get("single_row_latency")
    r["single_row_ratio_to_reference"] = d.get("single_row_ratio_to_reference")
    return r


def run_c(prep, tmp: Path, tag: str, env) -> dict[str, Any]:
    r = run_json(
        [PY, str(BENCH / "mlflow_eval.py"), "--config", prep["config"], "--model-uri", prep["uri"], "--json"],
        env,
        tmp / "logs" / f"c-{tag}.out",
    )
    d = r.pop("doc")
    r.update(
        passed=d.get("passed"),
        timings_s=d.get("timings_s", {}),
        import_s=d.get("import_s"),
        metrics=d.get("metrics", {}),
    )
    return r


# ---------------------------------------------------------------- summaries


def med(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    info = {
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "loadavg": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "OMP_NUM_THREADS": CLEAN_ENV.get("OMP_NUM_THREADS"),
        "PYTHONDONTWRITEBYTECODE": CLEAN_ENV.get("PYTHONDONTWRITEBYTECODE"),
    }
    for pkg in ("mlflow", "scikit-learn", "pandas", "numpy", "skops", "pytest"):
        info[pkg] = version(pkg)
    try:
        info["cpu_model"] = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return info


def verdict(value: float | None, target: float, lower_is_better: bool = True, strict: bool = False) -> str:
    if value is None:
        return "not measured"
    ok = (value < target if strict else value <= target) if lower_is_better else value >= target
    return "MET" if ok else "MISSED"


def compare_figures(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Relative difference of the figures both runs compute the same way (robustness examples differ)."""
    same = [
        "train_eval_overlap",
        "feature_drift",
        "target_leak",
        "r2",
        "mae",
        "rmse",
        "mape",
        "champion_mae",
        "slice_error",
        "residual_skew",
        "residual_kurtosis",
        "residual_spread",
        "residual_autocorrelation",
    ]
    out = {}
    for k in same:
        if k in a and k in b:
            x, y = float(a[k]), float(b[k])
            out[k] = 0.0 if x == y else abs(x - y) / max(abs(x), abs(y), 1e-300)
    return out


def main_rounds(args, prep, tmp: Path, env, log) -> dict[str, Any]:
    runners = {"a": run_a, "b": run_b, "c": run_c}
    log("warm-up (untimed): (a) promotes the version to @staging, so every timed run has a champion")
    warm = {k: runners[k](prep, tmp, "warmup", env) for k in "abc"}
    for k, w in warm.items():
        if w["exit"] != 0:
            log(f"  warm-up {KINDS[k]} exited {w['exit']}: see {w['stdout']} and .err")
    rounds: list[dict[str, Any]] = []
    for i in range(args.runs):
        order = "abc"[i % 3 :] + "abc"[: i % 3]
        res = {}
        for k in order:
            res[k] = runners[k](prep, tmp, f"r{i}", env)
        res["order"] = order
        rounds.append(res)
        log(
            f"  round {i + 1}/{args.runs} ({order}): "
            + ", ".join(f"{k} {res[k]['wall_s']:.2f} s" for k in "abc")
            + f"  [load {os.getloadavg()[0]:.1f}]"
        )
    summary: dict[str, Any] = {"warmup": warm, "rounds": rounds}
    for k in "abc":
        walls = [r[k]["wall_s"] for r in rounds]
        summary[k] = {
            "median_s": med(walls),
            "min_s": min(walls),
            "max_s": max(walls),
            "median_cpu_s": med(r[k]["cpu_s"] for r in rounds),
            "median_maxrss_mb": med(r[k]["maxrss_mb"] for r in rounds),
            "exits": [r[k]["exit"] for r in rounds],
        }
    a, b, c = (summary[k]["median_s"] for k in "abc")
    summary["ratio_ab"] = a / b
    summary["ratio_ac"] = a / c
    summary["ratio_ab_paired_median"] = med(r["a"]["wall_s"] / r["b"]["wall_s"] for r in rounds)
    summary["ratio_ac_paired_median"] = med(r["a"]["wall_s"] / r["c"]["wall_s"] for r in rounds)
    summary["ratio_ab_cpu"] = summary["a"]["median_cpu_s"] / summary["b"]["median_cpu_s"]
    fams = sorted(
        {f for r in rounds for f in r["a"]["families_s"]},
        key=lambda f: SCALE_FAMILIES.index(f) if f in SCALE_FAMILIES else 99,
    )
    summary["a_families_s"] = {f: med(r["a"]["families_s"].get(f, 0.0) for r in rounds) for f in fams}
    summary["a_gates_s"] = med(r["a"]["gates_s"] for r in rounds)
    summary["a_outside_gates_s"] = med(r["a"]["outside_gates_s"] for r in rounds)
    summary["a_session_timings_s"] = {
        k: med(r["a"]["session_timings_s"].get(k) for r in rounds) for k in rounds[0]["a"]["session_timings_s"]
    }
    bkeys = list(rounds[0]["b"]["families_s"])
    summary["b_families_s"] = {k: med(r["b"]["families_s"].get(k) for r in rounds) for k in bkeys}
    summary["b_in_process_s"] = med(r["b"]["in_process_s"] for r in rounds)
    summary["b_import_s"] = med(r["b"]["import_s"] for r in rounds)
    summary["c_timings_s"] = {k: med(r["c"]["timings_s"].get(k) for r in rounds) for k in rounds[0]["c"]["timings_s"]}
    summary["c_import_s"] = med(r["c"]["import_s"] for r in rounds)
    summary["a_status"] = [r["a"]["status"] for r in rounds]
    summary["b_all_passed"] = [r["b"]["all_passed"] for r in rounds]
    summary["c_passed"] = [r["c"]["passed"] for r in rounds]
    summary["single_row_p99_ms_a"] = med(r["a"]["single_row_p99_ms"] for r in rounds)
    summary["single_row_p99_ms_b"] = med(r["b"]["single_row_p99_ms"] for r in rounds)
    summary["single_row_p50_ms_b"] = med(r["b"]["single_row_p50_ms"] for r in rounds)
    summary["single_row_ratio_a"] = med(r["a"]["single_row_ratio_to_reference"] for r in rounds)
    summary["single_row_ratio_b"] = med(r["b"]["single_row_ratio_to_reference"] for r in rounds)
    summary["wait_share_a"] = med(r["a"]["wait_share"] for r in rounds)
    summary["a_latency_outcomes"] = [r["a"]["latency_outcomes"] for r in rounds]
    summary["figure_rel_diff_a_vs_b"] = compare_figures(rounds[-1]["a"]["figures"], rounds[-1]["b"]["figures"])
    return summary


def latency_and_overhead(args, prep, tmp: Path, env, log) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log(f"single-row latency: raw sklearn vs pyfunc, {args.latency_rounds} rows each, one process")
    lat = []
    for i in range(args.latency_runs):
        r = run_json(
            [
                PY,
                str(BENCH / "latency.py"),
                "--config",
                prep["config"],
                "--model-uri",
                prep["uri"],
                "--rounds",
                str(args.latency_rounds),
                "--json",
            ]
            + (["--pyinstrument", str(tmp / "pyinstrument.txt")] if i == 0 else []),
            env,
            tmp / "logs" / f"latency-{i}.out",
        )
        lat.append(r["doc"])
        if i == 0 and (tmp / "pyinstrument.txt").exists():
            out["pyinstrument_text"] = (tmp / "pyinstrument.txt").read_text()
    out["latency_runs"] = lat
    ok = [d for d in lat if d]
    if ok:
        out["raw_p50_ms"] = med(d["raw_sklearn"]["p50_ms"] for d in ok)
        out["raw_p99_ms"] = med(d["raw_sklearn"]["p99_ms"] for d in ok)
        out["pyfunc_p50_ms"] = med(d["pyfunc"]["p50_ms"] for d in ok)
        out["pyfunc_p99_ms"] = med(d["pyfunc"]["p99_ms"] for d in ok)
        out["pyfunc_over_raw_p99"] = med(d["pyfunc_over_raw_p99"] for d in ok)
        out["steps"] = ok[0]["steps"]
        for k in ("steps_sklearn_design", "sklearn_design_same_predictions"):
            if k in ok[0]:
                out[k] = ok[0][k]
    # MLflow overhead: `run-pipeline run` in process on a copy of the store (an existing store,
    # one version, @staging set); each repetition registers and gates one more version.
    copy = tmp / "overhead"
    shutil.copytree(tmp / "project", copy / "project")
    cfg = copy / "project" / "pipeline_config.yaml"
    text = cfg.read_text().replace(str(tmp / "project"), str(copy / "project"))
    cfg.write_text(text)
    runs = []
    for i in range(args.overhead_runs):
        log(f"MLflow overhead of the main job {i + 1}/{args.overhead_runs}: run-pipeline run on an existing store")
        r = run_json(
            [PY, str(BENCH / "mlflow_overhead.py"), "--config", str(cfg), "--json"],
            env,
            tmp / "logs" / f"overhead-{i}.out",
            cwd=copy / "project",
        )
        runs.append({**r["doc"], "wall_s": r["wall_s"], "exit": r["exit"]})
    out["overhead_runs"] = runs
    good = [d for d in runs if "mlflow_total_s" in d]
    if good:
        for k in (
            "mlflow_write_s",
            "mlflow_read_s",
            "mlflow_total_s",
            "gate_mlflow_roundtrip_s",
            "import_mlflow_s",
            "job_s",
        ):
            out[k] = med(d[k] for d in good)
        out["overhead_breakdown"] = good[len(good) // 2]["breakdown"]
    return out


def scale(args, prep, tmp: Path, env, log) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    import make_data

    res: dict[str, Any] = {"rows": {}, "families": list(args.families)}
    for n in args.scale:
        path = make_data.OUT_DIR / f"ames_{n}.csv"
        if not path.exists():
            log(f"making {path}")
            make_data.make(n)
        per: dict[str, Any] = {}
        for fam in args.families:
            ev = tmp / f"scale-{n}-{fam}"
            rss_file = tmp / "logs" / f"scale-{n}-{fam}.rss.json"
            fenv = {**env, "BENCH_RSS_FILE": str(rss_file)}
            r = run_child(
                gate_cmd(prep, ev, promote=False, marker=f"gates and {fam}", eval_data=path, wrapper=True),
                fenv,
                tmp / "logs" / f"scale-{n}-{fam}.out",
            )
            doc = evidence_of(ev)
            rss = json.loads(rss_file.read_text()) if rss_file.exists() else {}
            gates = [g for g in doc.get("gates", []) if g["family"] == fam]
            per[fam] = {
                "wall_s": r["wall_s"],
                "cpu_s": r["cpu_s"],
                "exit": r["exit"],
                "maxrss_mb": (rss.get("maxrss_kb") or r["maxrss_mb"] * 1024) / 1024,
                "gates_s": sum(float(g.get("duration_s") or 0) for g in gates),
                "session_timings_s": doc.get("timings_s", {}),
                "outcomes": {g["gate"]: g["outcome"] for g in gates},
                "messages": {g["gate"]: g["message"] for g in gates if g.get("message")},
            }
            bad = {g: o for g, o in per[fam]["outcomes"].items() if o != "passed"}
            log(
                f"  {n:>9,} rows  {fam:<12} {r['wall_s']:8.1f} s  peak RSS {per[fam]['maxrss_mb']:7.0f} MB  exit {r['exit']}"
                + (f"  not passed: {bad}" if bad else "")
            )
            shutil.rmtree(ev, ignore_errors=True)
        res["rows"][str(n)] = per
    ns = [str(n) for n in args.scale]
    if "100000" in ns and "1000000" in ns:
        res["growth_1m_over_100k"] = {
            f: res["rows"]["1000000"][f]["wall_s"] / res["rows"]["100000"][f]["wall_s"] for f in args.families
        }
        res["growth_1m_over_100k"]["total"] = sum(res["rows"]["1000000"][f]["wall_s"] for f in args.families) / sum(
            res["rows"]["100000"][f]["wall_s"] for f in args.families
        )
        res["growth_gates_only_1m_over_100k"] = {
            f: res["rows"]["1000000"][f]["gates_s"] / max(res["rows"]["100000"][f]["gates_s"], 1e-9)
            for f in args.families
        }
    return res


# ---------------------------------------------------------------- printing


def num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_main(s: dict[str, Any], m: dict[str, Any], runs: int) -> None:
    print(
        f"\nmachine: {m['cpu_count']} cores ({m['usable_cores']} usable), {m.get('cpu_model', '?')}; "
        f"load average at start {m['loadavg'][0]:.2f}; OMP_NUM_THREADS={m['omp_children']} for every child; "
        f"bytecode {m['bytecode_children']}; "
        f"python {m['python']}, mlflow {m['mlflow']}, scikit-learn {m['scikit-learn']}, pandas {m['pandas']}"
    )
    print(f"\nwall time per run, median of {runs} (min - max), fresh process each, imports included")
    for k in "abc":
        r = s[k]
        print(
            f"  {KINDS[k]:<44} {r['median_s']:7.2f} s  ({r['min_s']:.2f} - {r['max_s']:.2f})  cpu {r['median_cpu_s']:6.2f} s  "
            f"peak RSS {r['median_maxrss_mb']:5.0f} MB  exits {r['exits']}"
        )
    print(
        f"  ratio (a)/(b) {s['ratio_ab']:.2f}  (paired median {s['ratio_ab_paired_median']:.2f}; cpu {s['ratio_ab_cpu']:.2f})"
        f"   target <= {TARGETS['ab']}: {verdict(s['ratio_ab'], TARGETS['ab'])}"
    )
    print(
        f"  ratio (a)/(c) {s['ratio_ac']:.2f}  (paired median {s['ratio_ac_paired_median']:.2f})"
        f"   target (a) faster than (c): {verdict(s['ratio_ac'], 1.0, strict=True)}"
    )
    print("\nper-family split of (a): evidence gates[].duration_s (setup+call+teardown), median s")
    total = sum(s["a_families_s"].values())
    for f, v in s["a_families_s"].items():
        print(f"  {f:<14} {v:7.2f} s  {100 * v / s['a']['median_s']:5.1f} %")
    print(f"  {'all gates':<14} {total:7.2f} s")
    print(
        f"  {'outside gates':<14} {s['a_outside_gates_s']:7.2f} s  (interpreter, imports, collection, evidence, reports, promotion)"
    )
    print(
        "  session (inside the first gate that needs each): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in s["a_session_timings_s"].items())
    )
    print(
        f"\n(b) in process {num(s['b_in_process_s'])} s, imports {num(s['b_import_s'])} s; per step: "
        + ", ".join(f"{k} {num(v)}" for k, v in s["b_families_s"].items())
    )
    print(f"(c) imports {num(s['c_import_s'])} s; " + ", ".join(f"{k} {num(v)} s" for k, v in s["c_timings_s"].items()))
    print(
        f"single-row p99 as measured inside the runs: (a) latency gate {num(s['single_row_p99_ms_a'])} ms, "
        f"(b) {num(s['single_row_p99_ms_b'])} ms (p50 {num(s['single_row_p50_ms_b'])} ms); in reference units (p99 over the reference "
        f"workload's CPU time): (a) {num(s['single_row_ratio_a'])}x, (b) {num(s['single_row_ratio_b'])}x; (a) waited for a core "
        f"{num(100 * (s['wait_share_a'] or 0))} % of its single-row time"
    )
    print(
        "latency verdicts of (a) per round: "
        + "; ".join(", ".join(f"{g} {o}" for g, o in sorted(r.items())) for r in s["a_latency_outcomes"])
    )
    worst = max(s["figure_rel_diff_a_vs_b"].values(), default=float("nan"))
    print(
        f"same figures (a) vs (b): max relative difference {worst:.2g} over {len(s['figure_rel_diff_a_vs_b'])} figures; "
        f"(a) status {set(s['a_status'])}, (b) all passed {set(s['b_all_passed'])}, (c) passed {set(s['c_passed'])}"
    )


def print_latency(lat: dict[str, Any]) -> None:
    if "raw_p99_ms" not in lat:
        print("\nlatency: not measured")
        return
    print(f"\nsingle-row predict, one process, one OpenMP thread (median over {len(lat['latency_runs'])} runs)")
    print(
        f"  raw sklearn pipeline   p50 {lat['raw_p50_ms']:6.2f} ms  p99 {lat['raw_p99_ms']:6.2f} ms   target p99 <= {TARGETS['single_row_p99_ms']:g} ms: "
        f"{verdict(lat['raw_p99_ms'], TARGETS['single_row_p99_ms'])}"
    )
    print(
        f"  MLflow pyfunc          p50 {lat['pyfunc_p50_ms']:6.2f} ms  p99 {lat['pyfunc_p99_ms']:6.2f} ms   pyfunc/raw p99 "
        f"{lat['pyfunc_over_raw_p99']:.2f}, target <= {TARGETS['pyfunc_ratio']}: {verdict(lat['pyfunc_over_raw_p99'], TARGETS['pyfunc_ratio'])}"
    )
    for title, key in (
        ("per step, one row, the registered model", "steps"),
        (
            "per step, one row, the sklearn-only design it replaced (same predictions: "
            f"{lat.get('sklearn_design_same_predictions')})",
            "steps_sklearn_design",
        ),
    ):
        if key not in lat:
            continue
        print(f"  {title}:")
        for k, v in lat[key].items():
            if "p50_ms" in v:
                print(f"    {k:<72} p50 {v['p50_ms']:7.3f} ms  p99 {v['p99_ms']:7.3f} ms")
            else:
                print(f"    {k:<72} {v}")
    if "mlflow_total_s" in lat:
        print(
            f"\nMLflow overhead of the main job (run-pipeline run in process, existing store, median of {len(lat['overhead_runs'])}):"
        )
        print(
            f"  write (log_candidate, store_evidence, log_files, move_alias, archive) {lat['mlflow_write_s']:.2f} s; "
            f"read (load_model, get_version, model_digest, champion, evidence) {lat['mlflow_read_s']:.2f} s; "
            f"total {lat['mlflow_total_s']:.2f} s of a {lat['job_s']:.2f} s job   target <= {TARGETS['mlflow_overhead_s']:g} s: "
            f"{verdict(lat['mlflow_total_s'], TARGETS['mlflow_overhead_s'])}"
        )
        print(
            f"  not counted: import mlflow {lat['import_mlflow_s']:.2f} s; the determinism gate's own MLflow round trip "
            f"{lat['gate_mlflow_roundtrip_s']:.2f} s"
        )
        for k, v in list(lat["overhead_breakdown"].items())[:24]:
            print(f"    {k:<48} {v['seconds']:7.3f} s  x{v['calls']:<3} in {', '.join(v['outermost'])}")


def print_scale(sc: dict[str, Any]) -> None:
    ns = list(sc["rows"])
    print("\nscale: one subprocess per family; wall s (gates s) / peak RSS MB")
    print(
        "  "
        + f"{'family':<12}"
        + "".join(f"{int(n):>30,}" for n in ns)
        + ("   1M/100k" if "growth_1m_over_100k" in sc else "")
    )
    for f in sc["families"]:
        cells = "".join(
            f"{sc['rows'][n][f]['wall_s']:10.1f} ({sc['rows'][n][f]['gates_s']:7.1f}) / {sc['rows'][n][f]['maxrss_mb']:6.0f}"
            for n in ns
        )
        g = f"   {sc['growth_1m_over_100k'][f]:7.2f}" if "growth_1m_over_100k" in sc else ""
        print(f"  {f:<12}{cells}{g}")
    if "growth_1m_over_100k" in sc:
        gt = sc["growth_1m_over_100k"]["total"]
        peak = max(sc["rows"]["1000000"][f]["maxrss_mb"] for f in sc["families"])
        print(
            f"  growth time(1M)/time(100k), all families: {gt:.2f}   target <= {TARGETS['growth']:g}: {verdict(gt, TARGETS['growth'])}; "
            f"worst family {max(sc['growth_1m_over_100k'][f] for f in sc['families']):.2f}"
        )
        print(
            f"  peak RSS at 1M rows: {peak:.0f} MB   target <= {TARGETS['rss_1m_mb']:.0f} MB: {verdict(peak, TARGETS['rss_1m_mb'])}"
        )


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed rounds of (a), (b), (c) (default 5)")
    ap.add_argument(
        "--scale",
        type=int,
        nargs="*",
        default=[],
        help="row counts: run each gate family on bench/data/ames_<rows>.csv",
    )
    ap.add_argument("--families", nargs="+", default=list(SCALE_FAMILIES), help="families run at scale")
    ap.add_argument("--skip-main", action="store_true", help="only the scale runs")
    ap.add_argument("--skip-extras", action="store_true", help="no latency or MLflow overhead runs")
    ap.add_argument("--latency-rounds", type=int, default=1000)
    ap.add_argument("--latency-runs", type=int, default=3)
    ap.add_argument("--overhead-runs", type=int, default=3)
    ap.add_argument("--omp-threads", default="1", help="OMP_NUM_THREADS for every child ('' to inherit); default 1")
    ap.add_argument(
        "--write-bytecode",
        action="store_true",
        help="unset PYTHONDONTWRITEBYTECODE for the children (Python and pytest cache compiled modules)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (store, logs)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/<stamp>.json)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    started = dt.datetime.now(dt.UTC)
    tmp = Path(tempfile.mkdtemp(prefix="bench-gates-"))

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    t_start = time.perf_counter()
    env = child_env(args.omp_threads or None, args.write_bytecode)
    m = machine()
    m["omp_children"] = env.get("OMP_NUM_THREADS", "unset")
    m["bytecode_children"] = (
        "not written (PYTHONDONTWRITEBYTECODE set)" if env.get("PYTHONDONTWRITEBYTECODE") else "cached"
    )
    result: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": m,
        "args": vars(args) | {"out": str(args.out)},
        "targets": TARGETS,
        "temp": str(tmp),
    }
    try:
        log(f"temp folder {tmp}; preparing the store (train_and_log on a copy of the config)")
        prep = prepare(tmp, log)
        result["prepare"] = prep
        log(f"registered {prep['uri']} in {prep['train_and_log_s']:.1f} s")
        if not args.skip_main:
            result["main"] = main_rounds(args, prep, tmp, env, log)
            if not args.skip_extras:
                result["latency"] = latency_and_overhead(args, prep, tmp, env, log)
        elif args.scale:
            log("warm-up (untimed): a full gate run promotes the version to @staging (the champion at scale)")
            run_a(prep, tmp, "warmup", env)
        if args.scale:
            result["scale"] = scale(args, prep, tmp, env, log)
        result["machine"]["loadavg_end"] = os.getloadavg()
    finally:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = args.out or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
        out.write_text(json.dumps(result, indent=2, default=str))
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if "main" in result:
        print_main(result["main"], m, args.runs)
    if "latency" in result:
        print_latency(result["latency"])
    if "scale" in result:
        print_scale(result["scale"])
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
