"""run-pipeline: train, gate, promote, and look after the registry, one command each.

Exit codes: 0 ok; 1 gates failed or promotion refused; 2 bad input, usage or an
unreachable store. Every subcommand takes --json for machine-readable output.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pipeline import config as config_mod
from pipeline import live
from pipeline.config import ENGINES
from pipeline.errors import EXIT_BAD_INPUT, EXIT_GATES_FAILED, EXIT_OK, InputError, PipelineError
from pipeline.evidence import gate_results
from pipeline.judge import judge
from pipeline.teardown import fast_interpreter_exit

# Imported inside the commands that use them, measured on top of this module (`import pipeline.cli`,
# 0.13 s, is all `run-pipeline --help` and a bad flag load): pipeline.registry 0.15 s (numpy, cryptography),
# pipeline.gating 0.15 s, pytest 0.07 s with pipeline.plugin 1.1 s, pipeline.data, jobs, checks, figures and
# session 1.1-1.9 s (pandas, sklearn, scipy), numpy 0.05-0.1 s, pipeline.readiness 1.5 s, pipeline.live.service
# 0.6 s, live.app 0.7 s, live.monitor 0.55 s (sqlalchemy, pandas, fastapi), pipeline.init 1.6 s and
# pipeline.signing 0.02 s (cryptography, `keygen` only).

# ---------------------------------------------------------------- output


class Out:
    """Human tables on stdout, or one JSON document on stdout with progress on stderr."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.started = time.perf_counter()

    def progress(self, step: str) -> None:
        print(
            f"[{time.perf_counter() - self.started:6.1f}s] {step}",
            file=sys.stderr if self.as_json else sys.stdout,
            flush=True,
        )

    def table(self, rows: list[dict[str, Any]], columns: list[str]) -> None:
        if self.as_json:
            return
        cells = [columns] + [[_cell(r.get(c)) for c in columns] for r in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        for row in cells:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())

    def line(self, text: str) -> None:
        if not self.as_json:
            print(text, flush=True)

    def emit(self, doc: dict[str, Any]) -> None:
        if self.as_json:
            from pipeline.registry import dumps

            print(dumps(doc))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return config_mod.fmt_number(v)
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) or "-"
    return str(v)


# ---------------------------------------------------------------- gates through pytest


def check_suite(settings, out: Out) -> None:
    """Collect the gate suite without running it: every gate has a threshold, every required
    gate exists. `run` does this before it trains, so that bad config writes nothing."""
    run_gates(settings, out, None, promote=False, extra=["--collect-only"])


def run_gates(
    settings,
    out: Out,
    model_uri: str | None,
    *,
    promote: bool,
    eval_data: str | None = None,
    extra: list[str] | None = None,
):
    """Run the configured gate suite in process through pytest and the plugin; the typed result.

    The plugin takes these settings as loaded (no argv round trip). Bad input found at
    collection (a missing threshold, an unknown gate, an unreadable --eval-data) is raised
    as InputError: nothing ran and nothing was written.
    """
    import pytest

    from pipeline.plugin import GateRunRequest

    reports = Path("reports")
    collect_only = "--collect-only" in (extra or [])
    # pytest writes its JUnit file even when collection stops on bad input (an empty report):
    # it is written aside and moved into place only once the gates gave a verdict, so a refused
    # run leaves the last real report as it was.
    junit = reports / f"gates-{settings.env}.xml"
    partial = junit.with_name(f".{junit.name}.partial")
    new_folder = not reports.exists()
    args = [
        str(settings.gate_tests),
        "-m",
        "gates",
        "-q",
        "--tb=line",
        "-p",
        "no:cacheprovider",
        "--benchmark-quiet",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "--evidence-dir",
        str(reports),
        "-o",
        "console_output_style=classic",
    ]
    if model_uri:
        args += ["--model-uri", model_uri]
    if not collect_only:
        args.append(f"--junitxml={partial}")
    if promote:
        args.append("--promote")
    if eval_data:
        args += ["--eval-data", eval_data]
    args += extra or []
    request = GateRunRequest(settings)
    sink = sys.stderr if out.as_json else sys.stdout
    # pytest prints its usage error on stderr as well; the CLI's own line is the one a user sees.
    before = set(sys.modules)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO() if collect_only else sink),
            contextlib.redirect_stderr(io.StringIO()) as err,
        ):
            code = pytest.main(args, plugins=[request])
    finally:
        # The suite's own test modules go: another project's gates/test_gates.py, gated next
        # in the same process, is another module of the same name.
        suite = Path(settings.gate_tests).resolve()
        for name in [n for n in sys.modules if n not in before]:
            path = getattr(sys.modules[name], "__file__", None)
            if path and Path(path).resolve().is_relative_to(suite):
                del sys.modules[name]
    result = request.result
    verdict = (
        result.error is None
        and code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        and result.evidence is not None
    )
    if not collect_only:
        if verdict and partial.exists():
            os.replace(partial, junit)
        else:
            partial.unlink(missing_ok=True)
            if new_folder and reports.is_dir() and not any(reports.iterdir()):
                reports.rmdir()
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise InputError(result.usage or f"{settings.gate_tests}: no gate collected (tests marked gates)")
    sys.stderr.write(err.getvalue())
    if collect_only and code == pytest.ExitCode.OK:
        return result
    if result.error is not None:
        raise result.error
    if verdict:
        return result
    raise InputError(
        f"pytest {settings.gate_tests}: exited {int(code)} ({getattr(code, 'name', code)}); no gate verdict"
    )


def _gate_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "gate": g.gate,
            "family": g.family,
            "figure": g.figure_text,
            "threshold": g.threshold_text,
            "status": g.outcome,
        }
        for g in gate_results(doc)
    ]


def _alias_state(settings) -> dict[str, str]:
    from pipeline import registry

    return registry.alias_map(settings, settings.mlflow.registered_model)


# ---------------------------------------------------------------- subcommands


def cmd_run(args, settings, out: Out) -> int:
    from pipeline import data as data_mod
    from pipeline import figures, jobs

    # A column the config names that the data lacks stops the run here, before any training.
    header = data_mod.readable_header(settings)  # None: the data's own error comes from loading it
    problems = data_mod.config_problems(settings, header) if header is not None else []
    if problems:
        more = f" (and {len(problems) - 1} more; run-pipeline check lists them all)" if len(problems) > 1 else ""
        raise InputError(problems[0] + more)
    check_suite(settings, out)
    out.progress(f"train: {settings.model.type} on {settings.data.path.name}")
    # Library chatter must never reach stdout when stdout is the JSON document.
    with contextlib.redirect_stdout(sys.stderr if out.as_json else sys.stdout):
        trained = jobs.train_and_log(settings, progress=out.progress)
    c, m = trained.candidate, trained.metrics
    out.progress(f"registered {c.name} version {c.version}: {figures.metrics_line(m)}")
    out.progress(f"gates: {settings.env} thresholds on {c.uri}")
    result = run_gates(settings, out, c.uri, promote=not args.no_promote)
    code, doc = (
        result.exit_code,
        {**result.evidence, "promotion": result.promotion, "promotion_refused": result.promotion_refused},
    )
    out.progress("done")
    aliases = _alias_state(settings)
    out.line("")
    out.table(_gate_rows(doc or {}), ["gate", "figure", "threshold", "status"])
    out.line("")
    if doc and doc.get("promotion"):
        out.line(doc["promotion"])
    if doc and doc.get("promotion_refused"):
        out.line(f"promotion refused: {doc['promotion_refused']}")
    elif doc and doc.get("status") != "passed":
        out.line(f"not promoted: {'; '.join(doc.get('reasons', []))}")
    out.line("aliases: " + (", ".join(f"@{a} -> v{v}" for a, v in sorted(aliases.items())) or "none"))
    out.line(f"model {c.name} version {c.version}; eval {figures.metrics_line(m)}")
    out.emit(
        {
            "model": {"name": c.name, "version": c.version, "run_id": c.run_id, "sha256": c.model_sha256},
            "metrics": m,
            "evidence": doc,
            "aliases": aliases,
            "exit_code": code,
        }
    )
    return EXIT_OK if code == 0 else EXIT_GATES_FAILED


def cmd_validate(args, settings, out: Out) -> int:
    out.progress(f"gates: {settings.env} thresholds on {args.model_uri}" + (f" with {args.data}" if args.data else ""))
    if args.data:  # named by this command's own flag; the plugin checks the same for --eval-data
        from pipeline import data as data_mod

        data_mod.check_header(Path(args.data), settings.data, "--data")
    engine = ["--engine", args.engine] + (["--spark-master", args.spark_master] if args.spark_master else [])
    result = run_gates(settings, out, args.model_uri, promote=False, eval_data=args.data, extra=engine)
    code, doc = result.exit_code, result.evidence
    out.table(_gate_rows(doc or {}), ["gate", "figure", "threshold", "status"])
    out.line(f"{args.model_uri}: {settings.env} gates {doc.get('status') if doc else 'not run'}")
    out.emit({"evidence": doc, "exit_code": code})
    return EXIT_OK if code == 0 else EXIT_GATES_FAILED


def cmd_promote(args, settings, out: Out) -> int:
    from pipeline import gating

    name = settings.mlflow.registered_model
    out.progress(f"checking evidence of {name} version {args.version} for {settings.env}")
    message = gating.promote(settings, name, str(args.version), settings.env)
    out.line(message)
    out.emit({"promoted": True, "message": message, "aliases": _alias_state(settings)})
    return EXIT_OK


def cmd_approve(args, settings, out: Out) -> int:
    from pipeline import gating

    name = settings.mlflow.registered_model
    out.progress(f"checking evidence of {name} version {args.version} for {settings.env}")
    approval, message = gating.approve(settings, name, str(args.version), settings.env, args.note or "")
    out.line(message)
    out.emit({"approved": True, "message": message, "approval": {k: getattr(approval, k) for k in approval.__slots__}})
    return EXIT_OK


def cmd_rollback(args, settings, out: Out) -> int:
    from pipeline import gating

    message = gating.rollback(settings, settings.mlflow.registered_model, settings.env, force=args.force)
    out.line(message)
    out.emit({"message": message, "aliases": _alias_state(settings)})
    return EXIT_OK


def cmd_list(args, settings, out: Out) -> int:
    from pipeline import registry

    name = settings.mlflow.registered_model
    shown = config_mod.HEADLINE_METRICS[settings.data.task]
    rows = []
    for mv in registry.versions(settings, name):
        tags, metrics = mv.tags, mv.metrics
        row = {
            "version": mv.version,
            "aliases": list(mv.aliases),
            "created": mv.created,
            "archived": tags.get("archived") == "true",
            **{m: metrics.get(f"eval_{m}") for m in shown},
        }
        for env in settings.environments:
            row[f"gates.{env}"] = tags.get(f"gates.{env}.status")
        rows.append(row)
    out.table(
        rows,
        ["version", "aliases", *[f"gates.{e}" for e in settings.environments], *shown, "archived"],
    )
    if not rows:
        out.line(f"no versions of {name} in {settings.mlflow.tracking_uri}")
    out.emit({"model": name, "versions": rows})
    return EXIT_OK


def cmd_compare(args, settings, out: Out) -> int:
    from pipeline import checks, figures, registry
    from pipeline.session import GateSession

    name = settings.mlflow.registered_model
    gs = GateSession(settings)
    out.progress(f"predicting {len(gs.eval_frame)} evaluation rows with versions {args.v1} and {args.v2}")
    preds = {}
    for v in (args.v1, args.v2):
        model = registry.load_model(settings, f"models:/{name}/{registry.get_version(settings, name, str(v)).version}")
        preds[v] = checks.scores(model, gs.eval_frame[gs.features.columns])
    y = gs.eval_frame[settings.data.target].to_numpy(float)
    classifier, threshold = settings.data.classifier, settings.model.decision_threshold
    m1, m2 = (figures.eval_metrics(y, preds[v], classifier, threshold) for v in (args.v1, args.v2))
    cfg = settings.gates.champion
    # The champion gate's own check (on the task's loss: MAE, log loss), with v1 in the champion's place.
    key = config_mod.TASK_LOSS[settings.data.task]
    gate, loss = f"champion_{key}", config_mod.LOSS_LABELS[key]
    found = getattr(checks, gate)(
        y,
        preds[args.v2],
        preds[args.v1],
        champion=f"{name} v{args.v1}",
        resamples=cfg.bootstrap_resamples,
        confidence=cfg.confidence,
        seed=settings.seed,
        max_rows=cfg.bootstrap_rows,
        test=cfg.test,
    )
    delta, lower, upper = (found.reported[f"{gate}_{k}"] for k in ("change", "lower", "upper"))
    tol = settings.thresholds.get(gate)
    if upper < 0:
        verdict = f"version {args.v2} is better: {loss} {delta:+.2%}, {cfg.confidence:.0%} interval [{lower:+.2%}, {upper:+.2%}]"
    elif tol is None:
        verdict = f"version {args.v2} is not confidently better: {loss} {delta:+.2%}, {cfg.confidence:.0%} interval [{lower:+.2%}, {upper:+.2%}] (no {gate} threshold at {settings.env})"
    elif judge(tol, found).passed:
        verdict = (
            f"version {args.v2} passes the champion gate against {args.v1} ({settings.env}, {cfg.test.replace('_', '-')}): "
            f"{loss} {delta:+.2%}, {checks.CHAMPION_TESTS[cfg.test][0]} bound {found.value:+.2%} {tol.describe()}"
        )
    else:
        verdict = f"version {args.v2} is worse: {judge(tol, found).why}"
    rows = [{"metric": k, f"v{args.v1}": m1[k], f"v{args.v2}": m2[k], "change": m2[k] - m1[k]} for k in m1]
    out.table(rows, ["metric", f"v{args.v1}", f"v{args.v2}", "change"])
    out.line(f"recommendation: {verdict}")
    out.emit(
        {
            "rows": len(y),
            "metrics": {str(args.v1): m1, str(args.v2): m2},
            f"{key}_delta": delta,
            "interval": [lower, upper],
            "confidence": cfg.confidence,
            "recommendation": verdict,
        }
    )
    return EXIT_OK


def cmd_audit(args, settings, out: Out) -> int:
    from pipeline import gating

    envs = [settings.env] if args.env else list(settings.environments)
    out.progress(
        f"auditing {', '.join('@' + settings.environments[e].alias for e in envs)} of {settings.mlflow.registered_model}"
    )
    violations, rows = gating.audit(settings, envs)
    out.table(rows, ["env", "alias", "version", "status", "detail"])
    for line in violations:
        out.line(line)
    if not violations:
        out.line(f"audit: {len(rows)} aliases checked, every holder got there through the gates")
    out.emit({"ok": not violations, "violations": violations, "aliases": rows})
    return EXIT_GATES_FAILED if violations else EXIT_OK


def cmd_history(args, settings, out: Out) -> int:
    from pipeline import registry

    moves = registry.history(settings, settings.mlflow.registered_model)
    if args.env:
        moves = [m for m in moves if m.alias == settings.environment.alias]
    rows = [
        {
            "at": m.at,
            "alias": m.alias,
            "action": m.action,
            "version": m.version,
            "replaced": m.replaced,
            "by": m.by,
            "approved_by": m.approved_by or None,
            "evidence": (m.evidence_sha256 or "")[:12] or None,
            "forced": m.forced,  # a rollback's --force: why the restored version's evidence did not allow it
        }
        for m in moves
    ]
    out.table(rows, ["at", "alias", "action", "version", "replaced", "by", "approved_by", "evidence", "forced"])
    out.emit(
        {
            "model": settings.mlflow.registered_model,
            "moves": [{**r, "evidence": m.evidence_sha256} for r, m in zip(rows, moves)],
        }
    )
    return EXIT_OK


def cmd_check(args, settings, out: Out) -> int:
    from pipeline import readiness

    rows = readiness.checks(settings)
    out.table(rows, ["check", "status", "detail"])
    ok = all(r["status"] != "fail" for r in rows)
    out.emit({"ready": ok, "checks": rows})
    return EXIT_OK if ok else EXIT_BAD_INPUT


def cmd_serve(args, settings, out: Out) -> int:
    from pipeline.live.app import serve
    from pipeline.live.service import Service

    Service.check(settings, args.challenger)  # an alias nobody holds stops here, before the log is opened
    log = live.open_log(settings)
    service = Service(settings, log, challenger=args.challenger, mode=args.mode, share=args.share)
    arms = ", ".join(f"{a.name} @{a.alias} v{a.version}" for a in service.arms.values())
    out.progress(
        f"serving {service.name} ({arms}; {service.mode}, share {service.share:g}) on http://{args.host}:{args.port}, "
        f"log {log.url}"
    )
    serve(service, args.host, args.port)
    out.emit({"stopped": True, **service.health()})
    return EXIT_OK


def cmd_feedback(args, settings, out: Out) -> int:
    items = live.read_feedback(Path(args.data), args.key, args.value or settings.data.target, args.row)
    log = live.open_log(settings)
    try:
        result = log.add_feedback(items).as_dict()
    finally:
        log.close()
    out.line(
        f"{args.data}: {result['accepted']} rows joined, {result['duplicates']} duplicates ignored, "
        f"{result['unknown']} unknown request ids, {result['invalid']} missing or non-numeric values"
    )
    for what in ("unknown_ids", "invalid_rows"):
        if result[what]:
            out.line(
                f"  {what.replace('_', ' ')}: {', '.join(result[what][:5])}" + (" ..." if result[what][5:] else "")
            )
    out.emit({"data": args.data, **result})
    return EXIT_OK


def cmd_monitor(args, settings, out: Out) -> int:
    from pipeline.live.monitor import LIVE_GATES, Monitor

    log = live.open_log(settings)
    monitor = Monitor(settings, log)
    first, *others = LIVE_GATES[settings.data.task]
    if not settings.data.classifier:
        others.append("bias")
    try:
        while True:
            reports = monitor.run(act=not args.dry_run)
            rows = [
                {
                    "arm": r.arm,
                    "alias": r.alias,
                    "version": r.version,
                    "requests": r.requests,
                    "feedback": r.feedback_rows,
                    first: r.figures.get(first),
                    "interval": (
                        f"[{config_mod.fmt_number(r.figures[f'{first}_lower'])}, {config_mod.fmt_number(r.figures[f'{first}_upper'])}]"
                        if r.figures
                        else None
                    ),
                    **{name: r.figures.get(name) for name in others},
                    "drift": r.drift.get("feature_drift"),
                    "decision": r.decision,
                }
                for r in reports
            ]
            out.table(
                rows,
                ["arm", "alias", "version", "requests", "feedback", first, "interval", *others, "drift", "decision"],
            )
            for r in reports:
                out.line(f"{r.arm}: {r.decision}: {r.why}")
            out.emit({"arms": [r.as_dict() for r in reports], "counts": log.counts(), "events": log.event_list()})
            if args.once:
                return EXIT_OK
            time.sleep(args.every)
    finally:
        log.close()


def _share(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1]")
    return x


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other bad input
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--config", help="pipeline config (default: $PIPELINE_CONFIG, then configs/pipeline_config.yaml)"
    )
    common.add_argument(
        "--env", help="environment: thresholds, required gates and alias (default: the config's default_env)"
    )
    common.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p = _Parser(
        prog="run-pipeline",
        description=__doc__.splitlines()[0],
        epilog="exit codes: 0 ok, 1 gates failed or promotion refused, 2 bad input or usage",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("check", parents=[common], help="environment readiness: packages, config, data, tracking store")
    s.set_defaults(fn=cmd_check)
    s = sub.add_parser("run", parents=[common], help="train, gate and promote to the environment's alias when green")
    s.add_argument("--no-promote", action="store_true", help="gate but do not move the alias")
    s.set_defaults(fn=cmd_run)
    s = sub.add_parser("validate", parents=[common], help="gate a registered model without promoting it")
    s.add_argument("model_uri", metavar="MODEL_URI", help="models:/NAME/VERSION, models:/NAME@ALIAS or runs:/ID/model")
    s.add_argument(
        "--data",
        help="evaluate on this CSV (with --engine spark, or a Parquet folder) instead of the held-out split (same contract)",
    )
    s.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="where the figures over every evaluation row are computed: local, or spark (pyspark and Java)",
    )
    s.add_argument("--spark-master", help="Spark master URL for --engine spark (default: the config's spark.master)")
    s.set_defaults(fn=cmd_validate)
    s = sub.add_parser(
        "promote", parents=[common], help="move the environment's alias to VERSION if its evidence allows"
    )
    s.add_argument("version", type=_version, help="model version number")
    s.set_defaults(fn=cmd_promote)
    s = sub.add_parser(
        "approve",
        parents=[common],
        help="approve VERSION's current evidence for the environment (where approval: required)",
    )
    s.add_argument("version", type=_version, help="model version number")
    s.add_argument("--note", help="why, for the record (one line)")
    s.set_defaults(fn=cmd_approve)
    s = sub.add_parser("rollback", parents=[common], help="swap the environment's alias with its previous holder")
    s.add_argument(
        "--force",
        action="store_true",
        help="restore the previous holder even where its evidence (digests, signature, approval) no longer "
        "allows it there; the history records that it was forced, and why",
    )
    s.set_defaults(fn=cmd_rollback)
    s = sub.add_parser("list", parents=[common], help="versions with aliases, gate status and key metrics")
    s.set_defaults(fn=cmd_list)
    s = sub.add_parser("compare", parents=[common], help="two versions side by side on the same evaluation rows")
    s.add_argument("v1", type=_version, help="baseline version")
    s.add_argument("v2", type=_version, help="challenger version")
    s.set_defaults(fn=cmd_compare)
    s = sub.add_parser(
        "audit", parents=[common], help="every alias holder got there through the gates (exit 1 naming each violation)"
    )
    s.set_defaults(fn=cmd_audit)
    s = sub.add_parser(
        "history", parents=[common], help="every alias move (promote, rollback): version, time, actor, evidence"
    )
    s.set_defaults(fn=cmd_history)
    s = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the environment's alias (and a challenger) over HTTP, logging every answer",
    )
    s.add_argument("--challenger", metavar="ALIAS", help="a second alias served beside production")
    s.add_argument(
        "--mode",
        choices=["split", "shadow"],
        default="split",
        help="split: --share of rows answered by the challenger; shadow: production answers, the challenger scores the same rows (default: split)",
    )
    s.add_argument(
        "--share",
        type=_share,
        default=None,
        help="share of rows routed to the challenger in split mode, in [0, 1] (default: live.share)",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    s.set_defaults(fn=cmd_serve)
    s = sub.add_parser("feedback", parents=[common], help="join observed values from a CSV to logged predictions")
    s.add_argument("--data", required=True, help="the CSV file")
    s.add_argument("--key", required=True, help="its column of request ids (the X-Request-Id of the answer)")
    s.add_argument("--value", help="its column of observed values (default: the config's target)")
    s.add_argument("--row", help="its column of row numbers within a request (default: every request is one row)")
    s.set_defaults(fn=cmd_feedback)
    s = sub.add_parser(
        "monitor", parents=[common], help="live figures per arm from the log and feedback; rolls back, never promotes"
    )
    s.add_argument("--once", action="store_true", help="look once and exit (default: look every --every seconds)")
    s.add_argument("--every", type=float, default=60.0, help="seconds between looks (default: 60)")
    s.add_argument("--dry-run", action="store_true", help="report the decisions without carrying them out")
    s.set_defaults(fn=cmd_monitor)
    s = sub.add_parser(
        "init", help="write a commented starter config for a CSV (pipeline_config.yaml, model_config.yaml, gates/)"
    )
    s.add_argument("--data", required=True, help="the CSV file")
    s.add_argument("--target", required=True, help="the column to predict")
    s.add_argument(
        "--task",
        choices=config_mod.TASKS,
        help="what the target is (default: inferred: text, true/false or two values are a classifier's labels)",
    )
    s.add_argument("--positive-class", help="the label a binary model scores (default: inferred, and said why)")
    s.add_argument("--out", default="configs", help="folder for the config files (default: configs)")
    s.add_argument("--force", action="store_true", help="replace config files that are there already")
    s.add_argument("--json", action="store_true", help="print one JSON document")
    s.set_defaults(fn=cmd_init)
    s = sub.add_parser("keygen", help="write a new Ed25519 key pair for signing evidence (NAME.pem, NAME.pub)")
    s.add_argument("--out", default="keys", help="folder for the key files (default: keys)")
    s.add_argument("--name", default="signing", help="file name of the pair, without suffix (default: signing)")
    s.add_argument("--json", action="store_true", help="print one JSON document")
    s.set_defaults(fn=cmd_keygen)
    return p


def cmd_init(args, settings, out: Out) -> int:
    from pipeline import init

    out.progress(f"reading {args.data}")
    inferred, files = init.write(
        Path(args.data),
        args.target,
        Path(args.out),
        force=args.force,
        task=args.task,
        positive_class=args.positive_class,
    )
    out.line(
        f"{inferred.rows} rows; target {inferred.target}; {len(inferred.numeric)} numeric and "
        f"{len(inferred.categorical)} categorical features; id columns: {', '.join(inferred.ids) or 'none'}"
        + (f"; dropped: {', '.join(inferred.dropped)}" if inferred.dropped else "")
    )
    for why in inferred.why:
        out.line(f"  {why}")
    for f in files:
        out.line(f"wrote {f}")
    config = Path(args.out) / "pipeline_config.yaml"
    out.line(f"next: run-pipeline run --config {config}")
    out.emit(
        {
            "files": [str(f) for f in files],
            "rows": inferred.rows,
            "target": inferred.target,
            "numeric": inferred.numeric,
            "categorical": inferred.categorical,
            "id_columns": inferred.ids,
            "drop_columns": inferred.dropped,
            "order_by": inferred.order_by,
            "slices": inferred.slices,
            "log_target": inferred.log_target,
            "capped": inferred.capped,
            "task": inferred.task,
            "classes": inferred.classes,
            "positive_class": inferred.positive_class,
            "why": inferred.why,
            "next": f"run-pipeline run --config {config}",
        }
    )
    return EXIT_OK


def cmd_keygen(args, settings, out: Out) -> int:
    from pipeline import signing

    private, public, key_id = signing.generate(Path(args.out), args.name)
    out.line(f"private key {private} (mode 0600: give it to the gate runner only, e.g. as ${signing.KEY_ENV})")
    out.line(f"public key  {public} (list it under signing.public_keys)")
    out.line(f"key id      {key_id}")
    out.emit({"private_key": str(private), "public_key": str(public), "key_id": key_id})
    return EXIT_OK


def _version(text: str) -> str:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a model version number")
    return str(int(text))


def main(argv: list[str] | None = None) -> int:
    fast_interpreter_exit()
    args = parser().parse_args(argv)
    out = Out(args.json)
    settings = None
    try:
        if args.command in ("keygen", "init"):  # need no config and no store
            return args.fn(args, None, out)
        settings = config_mod.load(args.config, args.env)
        if args.command != "check":  # check reports an unreachable server as a row
            from pipeline.registry import ping

            ping(settings)
        return args.fn(args, settings, out)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(e), "exit_code": e.exit_code}))
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # an MLflow or store failure we did not foresee: still one line
        from pipeline.registry import store_error_line
        from pipeline.registry.store import access_error

        refused = access_error(settings, e) if settings is not None else None
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            return refused.exit_code
        line = store_error_line(e)
        if line is None:
            raise
        where = (
            settings.mlflow.tracking_uri
            if settings is not None
            else os.environ.get("MLFLOW_TRACKING_URI") or "from config"
        )
        print(f"error: tracking store {where}: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
