"""The Spark engine at scale: the staging gate run on generated Parquet evaluation sets.

    python bench/spark.py                                  # 1M, 3M and 10M rows, and the in-process engine at 1M
    python bench/spark.py --rows 1000000 --skip-local      # one size, Spark only
    python bench/spark.py --master spark://host:7077       # a cluster (the data folder must be readable there)

A throwaway project (the Ames config, its own embedded store) trains and registers one
version and promotes it to @staging, so that the champion gates compare it with itself on
every row. bench/data/ames_<rows>.parquet is written by Spark from data/raw/ames.csv,
resampled with replacement and noised by bench/make_data.py's `noisy` (one seeded generator
per partition), once per size and kept. Each size then runs `pytest model_tests -m gates
--engine spark --eval-data <parquet>` in a subprocess (through bench/pytest_rss.py), and the
in-process engine runs the same gates on the same 1M rows beside it (a CSV that Spark writes
from the Parquet, in the order the engine reads it); every figure computed over every row is
compared between the two.

Printed per run: wall time, exit code, the peak RSS of the Python driver (the harness's
process) and of the JVM beside it (Spark's driver and, in local mode, its executors; sampled
every 0.2 s from /proc), Spark's executors and parallelism from the evidence, and the gates'
outcomes. Results go to bench/results/spark-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


run = _module("run")
make_data = _module("make_data")


def make_parquet(rows: int, master: str, seed: int = 0) -> Path:
    """bench/data/ames_<rows>.parquet: Ames resampled with replacement and noised, written by Spark."""
    import numpy as np
    import pandas as pd

    from pipeline import spark as spark_mod

    path = DATA / f"ames_{rows}.parquet"
    if (path / "_SUCCESS").exists():
        return path
    spark = spark_mod.spark_session(master, (("spark.driver.memory", "6g"),))
    base = pd.read_csv(make_data.SOURCE)
    parts = max(2, rows // 500_000)
    per_part = -(-rows // parts)
    b = spark.sparkContext.broadcast(base)

    def draw(batches):
        for batch in batches:
            for part in batch["id"].to_numpy():
                rng = np.random.default_rng([seed, int(part)])
                n = min(per_part, rows - int(part) * per_part)
                for start in range(0, n, make_data.CHUNK):
                    k = min(make_data.CHUNK, n - start)
                    frame = b.value.iloc[rng.integers(0, len(b.value), k)].reset_index(drop=True)
                    yield make_data.noisy(frame, rng).astype(
                        {c: object for c in base.columns if base[c].dtype == object}
                    )

    sample = make_data.noisy(base.head(5), np.random.default_rng(0))
    schema = spark.createDataFrame(sample.astype({c: object for c in base.columns if base[c].dtype == object})).schema
    ids = spark.range(parts, numPartitions=parts)
    ids.mapInPandas(draw, schema).write.mode("overwrite").parquet(str(path))
    return path


def csv_of(parquet: Path, master: str) -> Path:
    """The Parquet rows as one CSV file, in the order the Spark engine reads them (its row
    positions): written by Spark from one partition, so the in-process engine gates the same rows."""
    from pipeline import spark as spark_mod

    out = parquet.with_name(f"{parquet.stem}-as-read.csv")  # not make_data's ames_<rows>.csv: other rows
    if out.exists():
        return out
    spark = spark_mod.spark_session(master, (("spark.driver.memory", "6g"),))
    folder = out.with_suffix(".csv-parts")
    # Spark's CSV writer trims text by default: Ames' "WD " would come back as "WD".
    spark.read.parquet(str(parquet)).coalesce(1).write.mode("overwrite").csv(
        str(folder), header=True, ignoreLeadingWhiteSpace=False, ignoreTrailingWhiteSpace=False
    )
    (part,) = folder.glob("part-*.csv")
    part.rename(out)
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    return out


# Gates whose figures come from rows in one place: on Spark, from the seeded sample of
# spark.sample_rows rows, not from every row; and the timings.
SAMPLED = {"target_leak", "noise_stability"}
SAMPLED_FAMILIES = {"robustness", "determinism", "latency", "serving"}


def compare(spark_doc: dict[str, Any], local_doc: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the gates over every row, Spark against in process: the worst relative difference."""

    def figures(doc: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for g in doc.get("gates", []):
            if g["gate"] in SAMPLED or g["family"] in SAMPLED_FAMILIES:
                continue
            if (g.get("figure") or {}).get("value") is not None:
                out[g["gate"]] = g["figure"]["value"]
            for k, v in (g.get("reported") or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{g['gate']}.{k}"] = v
        return out

    a, b = figures(spark_doc), figures(local_doc)
    diffs = {}
    for k in sorted(set(a) & set(b)):
        x, y = float(a[k]), float(b[k])
        same = x == y or (x != x and y != y)
        diffs[k] = 0.0 if same else abs(x - y) / max(abs(x), abs(y))
    worst = max(diffs, key=diffs.__getitem__) if diffs else None
    outcomes = {
        g["gate"]: g["outcome"]
        for g in spark_doc.get("gates", [])
        if g["gate"] not in SAMPLED and g["family"] not in SAMPLED_FAMILIES
    }
    local_outcomes = {g["gate"]: g["outcome"] for g in local_doc.get("gates", []) if g["gate"] in outcomes}
    return {
        "figures": len(diffs),
        "only_one_side": sorted(set(a) ^ set(b)),
        "worst": worst,
        "worst_relative_difference": diffs.get(worst) if worst else None,
        "above_1e-6": {k: (a[k], b[k]) for k, d in diffs.items() if d > 1e-6},
        "outcomes_differ": {k: (v, local_outcomes.get(k)) for k, v in outcomes.items() if local_outcomes.get(k) != v},
    }


def _stop_spark() -> None:
    """This process's Spark (the data writer's) stopped, so that its JVM does not sit beside the runs measured."""
    from pipeline import spark as spark_mod

    for session in list(spark_mod._SESSIONS.values()):
        session.stop()
    spark_mod._SESSIONS.clear()


class PeakRss:
    """The peak resident memory of a process and, separately, of its descendants (sampled from /proc)."""

    def __init__(self, pid: int):
        self.pid, self.own, self.others = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss_kb(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _children(self, pid: int) -> list[int]:
        out: list[int] = []
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                for c in (task / "children").read_text().split():
                    out.append(int(c))
                    out.extend(self._children(int(c)))
        except OSError:
            pass
        return out

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.own = max(self.own, self._rss_kb(self.pid))
            self.others = max(self.others, sum(self._rss_kb(c) for c in self._children(self.pid)))
            time.sleep(0.2)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"driver_rss_mb": self.own / 1024, "jvm_and_workers_rss_mb": self.others / 1024}


def gate_run(prep: dict[str, Any], tmp: Path, tag: str, data: Path, engine: str, master: str, env) -> dict[str, Any]:
    import subprocess

    evidence_dir = tmp / f"evidence-{tag}"
    cmd = run.gate_cmd(prep, evidence_dir, promote=False, eval_data=data, wrapper=True)
    cmd += ["--engine", engine, "--benchmark-quiet"] + (["--spark-master", master] if engine == "spark" else [])
    out = tmp / f"{tag}.out"
    t0 = time.perf_counter()
    with open(out, "w") as so:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=so, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        peak = PeakRss(proc.pid)
        code = proc.wait()
        mem = peak.stop()
    wall = time.perf_counter() - t0
    doc = run.evidence_of(evidence_dir)
    outcomes: dict[str, int] = {}
    for g in doc.get("gates", []):
        outcomes[g["outcome"]] = outcomes.get(g["outcome"], 0) + 1
    failed = [g["gate"] for g in doc.get("gates", []) if g["outcome"] in ("failed", "error")]
    return {
        "tag": tag,
        "engine": engine,
        "rows": doc.get("engine", {}).get("rows"),
        "wall_s": wall,
        "exit": code,
        **mem,
        "executors": doc.get("engine", {}).get("executors"),
        "parallelism": doc.get("engine", {}).get("default_parallelism"),
        "sample_rows": doc.get("engine", {}).get("sample_rows"),
        "outcomes": outcomes,
        "failed": failed,
        "timings_s": doc.get("timings_s", {}),
        "log": str(out),
        "evidence": doc,  # for compare(); not written to the results file
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    p.add_argument("--master", default="local[*]")
    p.add_argument("--skip-local", action="store_true", help="no in-process run at 1M rows")
    p.add_argument("--keep", type=Path, help="keep the project here instead of a temp folder")
    args = p.parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-spark-"))
    tmp.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    machine = run.machine()
    log(f"machine: {machine}")
    prep = run.prepare(tmp, log)
    env = run.child_env("1")
    # The project's spark settings: the JVM's heap (local mode: driver and executors in one JVM).
    cfg = Path(prep["config"])
    cfg.write_text(cfg.read_text() + '\nspark:\n  conf:\n    spark.driver.memory: "6g"\n')
    warm = run.run_child(run.gate_cmd(prep, tmp / "evidence-warm", promote=True), env, tmp / "warm.out")
    log(
        f"warm-up gate run on the split, in process (promotes to @staging): exit {warm['exit']}, {warm['wall_s']:.1f} s"
    )
    results: list[dict[str, Any]] = []
    for rows in args.rows:
        t = time.perf_counter()
        data = make_parquet(rows, args.master)
        _stop_spark()
        log(f"{data.name}: {time.perf_counter() - t:.1f} s to write (kept for the next run)")
        r = gate_run(prep, tmp, f"spark-{rows}", data, "spark", args.master, env)
        results.append(r)
        log(
            f"spark {rows:>10,} rows: {r['wall_s']:.1f} s, exit {r['exit']}, driver {r['driver_rss_mb']:.0f} MB, "
            f"JVM {r['jvm_and_workers_rss_mb']:.0f} MB, {r['outcomes']}"
        )
    if not args.skip_local:
        rows = 1_000_000
        csv = csv_of(make_parquet(rows, args.master), args.master)
        _stop_spark()
        r = gate_run(prep, tmp, f"local-{rows}", csv, "local", args.master, env)
        results.append(r)
        log(
            f"local  {rows:,} rows (the same rows as CSV): {r['wall_s']:.1f} s, exit {r['exit']}, "
            f"driver {r['driver_rss_mb']:.0f} MB, {r['outcomes']}"
        )
        spark_run = next((x for x in results if x["tag"] == f"spark-{rows}"), None)
        if spark_run is not None:
            same = compare(spark_run.pop("evidence"), r.pop("evidence"))
            results.append({"tag": f"compare-{rows}", **same})
            log(
                f"figures over every row at {rows:,}: {same['figures']} compared, worst relative difference "
                f"{same['worst_relative_difference']:.2e} ({same['worst']}); above 1e-6: {same['above_1e-6'] or 'none'}; "
                f"outcomes that differ: {same['outcomes_differ'] or 'none'}"
            )
    for r in results:
        r.pop("evidence", None)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"spark-{stamp}.json"
    out.write_text(json.dumps({"machine": machine, "master": args.master, "results": results}, indent=1))
    print()
    print(
        "| engine | rows | wall s | exit | driver peak RSS MB | JVM + workers peak RSS MB | executors | parallelism | gates |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        if "engine" not in r:  # the comparison, printed above
            continue
        print(
            f"| {r['engine']} | {r['rows'] or r['tag'].split('-')[-1]} | {r['wall_s']:.1f} | {r['exit']} | {r['driver_rss_mb']:.0f} | "
            f"{r['jvm_and_workers_rss_mb']:.0f} | {r['executors'] or '-'} | {r['parallelism'] or '-'} | "
            f"{', '.join(f'{v} {k}' for k, v in sorted(r['outcomes'].items()))}"
            + (f" (failed: {', '.join(r['failed'])})" if r["failed"] else "")
            + " |"
        )
    print(f"\nresults: {out}")
    return 0 if all(r["exit"] in (0, 1) for r in results if "exit" in r) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
