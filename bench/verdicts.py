"""Repeated staging gate runs of one model, on an idle machine and on one made busy: same verdicts?

    python bench/verdicts.py              # 10 idle and 10 busy runs, alternating (~10 min)
    python bench/verdicts.py --runs 3

One version is trained and registered on a temp store (as bench/run.py prepares it) and
promoted to @staging by an untimed warm-up run, so that every run has a champion to compare
with (the latency comparison times the candidate against it). Then each round runs the whole
staging gate suite twice in a fresh subprocess (`pytest model_tests -m gates --model-uri ...
--env staging`, no promotion): once on the idle machine, once while `--busy` busy-loop
processes (default 4, on this 2-core machine kind) run beside it. Printed per run: the
evidence status, every latency gate's outcome and figure, the share of the single-row time the
process waited for a core, and the load average; then whether every run gave every gate the
same verdict. Results go to bench/results/verdicts-<stamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as runner  # noqa: E402  (bench/run.py: prepare, gate_cmd, run_child, evidence_of)

from pipeline.timing import busy_machine  # noqa: E402


def one_run(prep: dict, tmp: Path, tag: str, env: dict) -> dict:
    ev = tmp / f"evidence-{tag}"
    r = runner.run_child(runner.gate_cmd(prep, ev, promote=False), env, tmp / "logs" / f"{tag}.out")
    doc = runner.evidence_of(ev)
    gates = {g["gate"]: g for g in doc.get("gates", [])}
    lat = {
        name: {
            "outcome": g["outcome"],
            "figure": (g.get("figure") or {}).get("value"),
            "wait_share": (g.get("reported") or {}).get("wait_share"),
        }
        for name, g in gates.items()
        if g["family"] == "latency"
    }
    return {
        "tag": tag,
        "wall_s": r["wall_s"],
        "exit": r["exit"],
        "status": doc.get("status"),
        "load": os.getloadavg()[0],
        "outcomes": {name: g["outcome"] for name, g in gates.items()},
        "latency": lat,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="idle runs, and as many busy ones")
    ap.add_argument("--busy", type=int, default=4, help="busy-loop processes during a busy run")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.busy < 1:
        ap.error("--runs and --busy must be at least 1")

    def log(msg: str) -> None:
        print(msg, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="bench-verdicts-"))
    try:
        prep = runner.prepare(tmp, log)
        env = runner.child_env("1")
        log("warm-up: the version is gated and promoted to @staging (the champion of every later run)")
        warm = runner.run_child(
            runner.gate_cmd(prep, tmp / "evidence-warm", promote=True), env, tmp / "logs" / "warm.out"
        )
        if warm["exit"] != 0:
            log(f"warm-up gate run failed (exit {warm['exit']}); see {tmp / 'logs' / 'warm.out'}")
            return 1
        results = []
        for i in range(args.runs):
            for kind in ("idle", "busy"):
                with busy_machine(args.busy, limit_s=600) if kind == "busy" else contextlib.nullcontext():
                    r = one_run(prep, tmp, f"{kind}-{i}", env)
                r["kind"] = kind
                results.append(r)
                lat = ", ".join(
                    f"{g} {v['outcome']} {v['figure']:.4g}" if v["figure"] is not None else f"{g} {v['outcome']}"
                    for g, v in sorted(r["latency"].items())
                )
                wait = r["latency"].get("single_row_latency", {}).get("wait_share")
                log(
                    f"{r['tag']:>8}: {r['status']}, {r['wall_s']:.1f} s, load {r['load']:.2f}; {lat}; "
                    f"single-row waited {100 * (wait or 0):.0f} %"
                )
        verdicts = {json.dumps(r["outcomes"], sort_keys=True) for r in results}
        same = len(verdicts) == 1
        log(
            f"\n{len(results)} runs ({args.runs} idle, {args.runs} busy with {args.busy} busy loops): "
            + (
                "every gate had the same verdict in every run"
                if same
                else f"{len(verdicts)} different sets of verdicts"
            )
        )
        if not same:
            for gate in sorted(results[0]["outcomes"]):
                seen = {r["outcomes"].get(gate) for r in results}
                if len(seen) > 1:
                    log(f"  {gate}: " + ", ".join(f"{r['tag']} {r['outcomes'].get(gate)}" for r in results))
        runner.RESULTS.mkdir(exist_ok=True)
        out = runner.RESULTS / f"verdicts-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"runs": results, "same_verdicts": same, "busy_loops": args.busy}, indent=2))
        log(f"results: {out}")
        return 0 if same else 1
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
