"""The latency gates on an idle machine and on one this test makes busy: "too slow" is told
apart from "could not measure", and a busy machine never fails a model that is fast enough.

Three models, each gated on the latency family alone (the project's suite holds only that
family, so only its gates are required), at staging's bounds (p99 <= 100 ms and <= 50x the
reference workload; >= 5,000 rows/s):

- the configured model (p99 ~5 ms): passed when idle; passed or inconclusive when busy, never failed;
- one that sleeps 150 ms per call (a remote lookup): failed, idle or busy, since its time
  stays beyond the bound with the waiting for a core taken out;
- one that computes 50 ms per call: passed when idle; inconclusive when busy (its time there
  is ~2.5x, beyond the bound, but only by the time it waited for a core), and an inconclusive
  required gate refuses promotion, saying so.

`pipeline.timing.busy_machine` starts four busy-loop processes (this machine has 2 cores), each ending by
itself after 150 s and killed when the block ends. Marked solo: the load must not land on
other tests, nor theirs on these idle runs.
"""

from __future__ import annotations

from pathlib import Path

import bad_models as bm
import pytest
from threadpoolctl import threadpool_limits

from conftest import CHEAP, GateRun, deep_merge, run_gates_in_process, write_project
from pipeline import config as config_mod
from pipeline import data as data_mod
from pipeline import figures, registry, train
from pipeline.timing import busy_machine

pytestmark = [pytest.mark.slow, pytest.mark.solo]

TESTS_DIR = Path(__file__).resolve().parent
LATENCY = ("single_row_latency", "batch_throughput")
# 1,000-row batches (staging's own size): the busy model's 50 ms per call is then a fifth of a batch.
OVERRIDES = deep_merge(CHEAP, {"gates": {"latency": {"batch_rows": 1000}}})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latency")
    cfg = write_project(folder / "project", OVERRIDES, families=("latency",))
    settings = config_mod.load(cfg, "staging")
    dataset = data_mod.load(settings)
    split = data_mod.split(settings, dataset)
    with threadpool_limits(1):
        model = train.fit(settings, dataset.features, split.train)
    models = {"configured": model,
              "sleeps": bm.SlowPredict(train.build(settings, dataset.features), delay_s=0.15).adopt(model, split.train[dataset.features.columns]),
              "computes": bm.BusyPredict(train.build(settings, dataset.features), cpu_s=0.05).adopt(model, split.train[dataset.features.columns])}
    metrics = figures.regression_metrics(split.eval[dataset.target], model.predict(split.eval[dataset.features.columns]))
    versions = {name: registry.log_candidate(settings, m, dataset, split.eval, metrics).version for name, m in models.items()}
    return folder, cfg, versions


def gate(project, name: str, run: str, promote: bool = False) -> GateRun:
    folder, cfg, versions = project
    return run_gates_in_process(folder / run, cfg, env="staging", model_uri=f"models:/ames-price/{versions[name]}",
                                promote=promote, pythonpath=(TESTS_DIR,), paths=(cfg.parent / "gates",))


def latency(run: GateRun) -> dict[str, str]:
    assert set(run.outcomes) == {*LATENCY, "latency_vs_champion"}, run.outcomes  # the project's suite: the latency family
    return {g: run.outcomes[g] for g in LATENCY}


def test_idle_machine_passes_a_fast_model_and_fails_a_slow_one(project):
    fast, slow, heavy = gate(project, "configured", "idle-fast"), gate(project, "sleeps", "idle-slow"), gate(project, "computes", "idle-heavy")
    assert latency(fast) == {g: "passed" for g in LATENCY}, fast.output[-3000:]
    assert fast.gates["single_row_latency"]["reported"]["wait_share"] < 0.05
    assert slow.outcomes["single_row_latency"] == "failed" and slow.returncode == 1
    assert slow.gates["single_row_latency"]["message"].startswith("single-row p99 1")  # 15x ms, beyond <= 100 ms
    assert latency(heavy) == {g: "passed" for g in LATENCY}, heavy.output[-3000:]


def test_busy_machine_fails_only_what_is_slow_without_the_waiting_and_refuses_on_inconclusive(project):
    # From here on the configured model holds @staging: every run also times its candidate
    # against it, in the same rounds on the same rows.
    folder, cfg, versions = project
    registry.connect(config_mod.load(cfg, "staging")).set_registered_model_alias("ames-price", "staging", versions["configured"])
    with busy_machine():
        fast = gate(project, "configured", "busy-fast")
        slow = gate(project, "sleeps", "busy-slow")
        heavy = gate(project, "computes", "busy-heavy", promote=True)
    # The machine was busy, and the gates saw it: the computing models waited for a core.
    for run in (fast, heavy):
        assert run.gates["single_row_latency"]["reported"]["wait_share"] > 0.1, run.gates["single_row_latency"]
    assert set(latency(fast).values()) <= {"passed", "inconclusive"}, fast.gates
    # The configured model against itself: the waiting comes out of both, so load does not make
    # one look slower than the other; on 20 rounds of a busy machine the interval may straddle
    # the bound (inconclusive), never beyond it.
    assert fast.outcomes["latency_vs_champion"] in ("passed", "inconclusive"), fast.gates["latency_vs_champion"]
    assert slow.outcomes["latency_vs_champion"] == "failed"  # 150 ms against ~5 ms
    assert slow.outcomes["single_row_latency"] == "failed", slow.gates["single_row_latency"]
    # The model that computes 50 ms per call is fine when idle; here it could not be judged.
    assert heavy.outcomes["single_row_latency"] == "inconclusive", heavy.gates["single_row_latency"]
    message = heavy.gates["single_row_latency"]["message"]
    assert message.startswith("inconclusive: single-row p99 ") and "the machine was busy" in message and message.endswith("(staging)")
    assert heavy.returncode == 1 and heavy.evidence["status"] == "failed"
    assert any("inconclusive" in r for r in heavy.evidence["reasons"]), heavy.evidence["reasons"]
    (refusal,) = heavy.refusals
    assert "gates inconclusive: " in refusal and "single_row_latency" in refusal, refusal
    aliases = registry.connect(config_mod.load(cfg, "staging")).get_registered_model("ames-price").aliases
    assert {a: str(v) for a, v in aliases.items()} == {"staging": versions["configured"]}  # not moved to the refused version
