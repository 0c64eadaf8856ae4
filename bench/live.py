"""What `run-pipeline serve` adds to an answer: a benchmark, not a timed test.

    python bench/live.py [--rounds 300] [--seconds 10] [--json]

On a throwaway project (conftest's light model on Ames, its own embedded store) it measures,
in one run, with the load average beside every figure:

  - single-row latency, p50 and p99, of the same version (a) called in process (pyfunc), (b)
    behind `run-pipeline serve` (production alone), (c) behind `run-pipeline serve` with a
    challenger in split mode (the other arm scores every row in the shadow), (d) the same in
    shadow mode (production answers, the challenger scores every row), (e) behind `mlflow
    models serve`; the rounds interleave (a, b, c, d, e, a, ...) so a stretch of load falls on
    all of them; how many rows (c) and (d) scored in the shadow, and skipped; every HTTP client
    holds one persistent connection (pipeline.live.client.Connection), as a router or a pool does;
  - throughput of (b), then of (e), with two clients for --seconds each, and how many requests
    were lost (any answer but 200, or none);
  - prediction log rows written per second (SQLite, batched), straight through the writer.

The closing line quotes the ratios measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))


def percentiles(ms: list[float]) -> dict[str, float]:
    import numpy as np

    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300, help="single-row requests per way of answering (default: 300)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run (default: 10)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from mlflow import MlflowClient

    from pipeline import config as config_mod
    from pipeline import data as data_mod
    from pipeline import registry, servers
    from pipeline.live.client import Connection, http, scoring_payload
    from pipeline.live.log import PredictionLog
    from tests.conftest import CHEAP, LIGHT_MODEL, registered_versions, write_project

    def say(text: str) -> None:
        print(f"[load {os.getloadavg()[0]:.2f}] {text}", file=sys.stderr if args.json else sys.stdout, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = write_project(folder / "project", CHEAP, model=LIGHT_MODEL, families=("metrics",))
        settings = config_mod.load(cfg, "production")
        say("training and registering two versions")
        v1, v2 = registered_versions(settings, 2)
        client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.tracking_uri)
        client.set_registered_model_alias(settings.mlflow.registered_model, "production", v1)
        client.set_registered_model_alias(settings.mlflow.registered_model, "challenger", v2)
        name = settings.mlflow.registered_model
        frame = data_mod.split(settings, data_mod.load(settings)).eval
        columns = data_mod.load(settings).features.columns
        rows = [frame.iloc[[i]][columns] for i in range(len(frame))]
        bodies = [scoring_payload(r) for r in rows]
        model = registry.load_pyfunc(settings, f"models:/{name}/{v1}")

        env = {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri}
        serve = [sys.executable, "-m", "pipeline.cli", "serve", "--config", str(cfg), "--env", "production"]
        alone_port, split_port, shadow_port = servers.free_port(), servers.free_port(), servers.free_port()
        alone = servers.Server(
            serve + ["--port", str(alone_port)], alone_port, "/ping", folder / "alone.log", env=env, name="serve"
        )
        split = servers.Server(
            serve + ["--port", str(split_port), "--challenger", "challenger", "--share", "0.5"],
            split_port,
            "/ping",
            folder / "split.log",
            env=env,
            name="serve with a challenger",
        )
        shadow = servers.Server(
            serve + ["--port", str(shadow_port), "--challenger", "challenger", "--mode", "shadow"],
            shadow_port,
            "/ping",
            folder / "shadow.log",
            env=env,
            name="serve with a challenger in the shadow",
        )
        mlflow_srv = servers.model_server(f"models:/{name}/{v1}", folder / "mlflow.log", env=env)
        result: dict = {"loadavg_start": os.getloadavg()}
        say("starting run-pipeline serve (alone and with a challenger) and mlflow models serve")
        with alone.start(120), split.start(120), shadow.start(120), mlflow_srv.start(120):
            conns = {
                k: Connection(srv.url)
                for k, srv in (("alone", alone), ("split", split), ("shadow", shadow), ("mlflow", mlflow_srv))
            }
            ways = {
                "in_process": lambda b, r: model.predict(r),
                "serve": lambda b, r: conns["alone"].post("/invocations", b),
                "serve_with_challenger": lambda b, r: conns["split"].post("/invocations", b),
                "serve_shadow": lambda b, r: conns["shadow"].post("/invocations", b),
                "mlflow_models_serve": lambda b, r: conns["mlflow"].post("/invocations", b),
            }
            for fn in ways.values():  # warm up: first calls load lazily
                for i in range(10):
                    fn(bodies[i], rows[i])
            times: dict[str, list[float]] = {k: [] for k in ways}
            for i in range(args.rounds):
                j = i % len(rows)
                for k, fn in ways.items():
                    t0 = time.perf_counter()
                    out = fn(bodies[j], rows[j])
                    times[k].append(1000 * (time.perf_counter() - t0))
                    if k != "in_process" and out[0] != 200:
                        raise SystemExit(f"{k}: answered {out[0]}: {out[1][:200]!r}")
            result["single_row"] = {k: percentiles(v) for k, v in times.items()}
            result["loadavg_single_row"] = os.getloadavg()
            for key, srv in (("serve_with_challenger", split), ("serve_shadow", shadow)):
                h = json.loads(http(srv.url + "/health")[1])
                result["single_row"][key]["shadow"] = {k: h["shadow"][k] for k in ("pending", "skipped", "restarts")}
                result["single_row"][key]["shadow"]["scored"] = sum(
                    float(line.split()[-1])
                    for line in http(srv.url + "/metrics")[1].decode().splitlines()
                    if line.startswith("live_shadow_rows_total")
                )
            say(
                "single row: "
                + ", ".join(
                    f"{k} p50 {v['p50_ms']:.2f} ms p99 {v['p99_ms']:.2f} ms" for k, v in result["single_row"].items()
                )
            )

            def throughput(url: str) -> tuple[int, int]:
                """Requests answered and lost by `url` with two clients (a connection each) for --seconds."""
                answered, lost = [0, 0], [0, 0]
                stop = time.monotonic() + args.seconds

                def client_loop(w: int) -> None:
                    conn, i = Connection(url), w
                    while time.monotonic() < stop:
                        try:
                            status, _ = conn.post(
                                "/invocations", bodies[i % len(bodies)], headers={"X-Request-Id": f"t{w}-{i}"}
                            )
                        except OSError:
                            status, conn = 0, Connection(url)
                        if status == 200:
                            answered[w] += 1
                        else:
                            lost[w] += 1
                        i += 2

                threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                return sum(answered), sum(lost)

            served, served_lost = throughput(alone.url)
            theirs, theirs_lost = throughput(mlflow_srv.url)
            health = json.loads(http(alone.url + "/health")[1])
            result["throughput"] = {
                "clients": 2,
                "seconds": args.seconds,
                "answered": served,
                "lost": served_lost,
                "requests_per_s": served / args.seconds,
                "mlflow_models_serve_requests_per_s": theirs / args.seconds,
                "mlflow_models_serve_lost": theirs_lost,
                "log_dropped": health["log"]["dropped"],
                "loadavg": os.getloadavg(),
            }
            say(
                f"throughput with 2 clients: run-pipeline serve {served / args.seconds:.0f} requests/s, {served_lost} lost, "
                f"{health['log']['dropped']} log rows dropped; mlflow models serve {theirs / args.seconds:.0f} requests/s, "
                f"{theirs_lost} lost"
            )

        log = PredictionLog(f"sqlite:///{folder / 'bench-log.db'}", queue_rows=200_000).start()
        n = 50_000
        feats = json.dumps({c: 1.0 for c in columns})
        t0 = time.perf_counter()
        log.put(
            {
                "request_id": f"b{i}",
                "row": 0,
                "arm": "production",
                "alias": "production",
                "version": "1",
                "answered": 1,
                "at": time.time(),
                "prediction": 1.0,
                "latency_ms": 1.0,
                "features_sha256": "0" * 64,
                "features": feats,
            }
            for i in range(n)
        )
        while log.written + log.dropped < n:
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        log.close()
        result["log"] = {
            "rows": n,
            "seconds": elapsed,
            "rows_per_s": n / elapsed,
            "dropped": log.dropped,
            "loadavg": os.getloadavg(),
        }
        say(f"prediction log: {n / elapsed:,.0f} rows/s written (SQLite, batches of 500), {log.dropped} dropped")

    s = result["single_row"]
    ratios = {
        f"{k}_over_in_process_p{q}": s[k][f"p{q}_ms"] / s["in_process"][f"p{q}_ms"]
        for k in ("serve", "serve_with_challenger", "serve_shadow", "mlflow_models_serve")
        for q in (50, 99)
    }
    ratios.update(
        {
            f"{k}_over_serve_p{q}": s[k][f"p{q}_ms"] / s["serve"][f"p{q}_ms"]
            for k in ("serve_with_challenger", "serve_shadow")
            for q in (50, 99)
        }
    )
    ratios.update(
        {
            f"serve_over_mlflow_models_serve_p{q}": s["serve"][f"p{q}_ms"] / s["mlflow_models_serve"][f"p{q}_ms"]
            for q in (50, 99)
        }
    )
    result["ratios"] = ratios
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"in one run (load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores): run-pipeline serve answers one row in "
            f"{ratios['serve_over_in_process_p50']:.1f}x (p50) / {ratios['serve_over_in_process_p99']:.1f}x (p99) the in-process time, "
            f"{ratios['serve_over_mlflow_models_serve_p50']:.2f}x / {ratios['serve_over_mlflow_models_serve_p99']:.2f}x mlflow models serve's; "
            f"with a challenger {ratios['serve_with_challenger_over_in_process_p50']:.1f}x / {ratios['serve_with_challenger_over_in_process_p99']:.1f}x "
            f"({ratios['serve_with_challenger_over_serve_p50']:.2f}x / {ratios['serve_with_challenger_over_serve_p99']:.2f}x serving alone; "
            f"in shadow mode {ratios['serve_shadow_over_serve_p50']:.2f}x / {ratios['serve_shadow_over_serve_p99']:.2f}x; "
            f"{s['serve_with_challenger']['shadow']['scored']:.0f} and {s['serve_shadow']['shadow']['scored']:.0f} rows shadow-scored, "
            f"{s['serve_with_challenger']['shadow']['skipped'] + s['serve_shadow']['shadow']['skipped']} skipped); "
            f"{result['throughput']['requests_per_s']:.0f} requests/s with {result['throughput']['lost']} lost, "
            f"{result['throughput']['requests_per_s'] / result['throughput']['mlflow_models_serve_requests_per_s']:.1f}x "
            f"mlflow models serve's; "
            f"the log writes {result['log']['rows_per_s']:,.0f} rows/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
