"""Timing on a shared machine: a fixed reference workload timed between the model's rounds.

A busy machine slows every call in a process, the model's and any other. Two things here say
how much: the time each call waited for a core, runnable but not running (the kernel's
runqueue wait, Linux), and a fixed reference workload timed in the same process between the
model's rounds, whose wall time over its CPU time estimates the same where the kernel does
not say. The reference's CPU time is also the unit of a figure that a slower or faster
machine moves less than milliseconds (the ratio to the reference).

No pytest and no MLflow here: the latency gates, bench/ and the tests call the same code.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

# The reference: small NumPy ufuncs on a fixed array and a little pure Python, about what a
# single-row predict does (array checks, small numeric work, Python glue), on one thread (no
# BLAS call, so no thread pool). Its size is fixed forever: its CPU time is the unit of the
# ratio figure (~2 ms on an idle core of this machine kind).
_ARRAY = np.random.default_rng(0).standard_normal((48, 48))


def reference_workload() -> float:
    x = _ARRAY
    for _ in range(250):
        x = np.tanh(x * 0.9 + _ARRAY)
    s = 0
    for i in range(15000):
        s += i * i % 7
    return float(x[0, 0]) + s


def runqueue_wait() -> float | None:
    """Seconds this process's threads have waited for a core, runnable but not running, since
    they started (Linux schedstat: the second field of /proc/self/task/*/schedstat); None
    where the kernel does not say (then the reference workload's stretch estimates it)."""
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat", "rb") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


@dataclass(frozen=True)
class Rounds:
    """Seconds per round: the model's calls, the reference's between them, and a second model's
    (the champion's) where one was timed on the same rows in the same rounds."""

    candidate: np.ndarray  # wall seconds of each call
    candidate_cpu: np.ndarray  # CPU seconds of the same calls (the process's: its thread pools included)
    reference: np.ndarray  # wall seconds of each round's reference workload
    reference_cpu: np.ndarray  # CPU seconds of the same runs
    other: np.ndarray | None = None  # the second model's wall seconds, same rounds and rows
    candidate_wait: np.ndarray | None = None  # seconds each call waited for a core (None: not measurable here)
    other_cpu: np.ndarray | None = None
    other_wait: np.ndarray | None = None
    window: np.ndarray | None = (
        None  # wall seconds of the window the candidate's CPU and wait were read in (None: `candidate`)
    )

    @property
    def stretch(self) -> float:
        return stretch(self.reference, self.reference_cpu)

    @property
    def wait_share(self) -> float:
        """The share of the model's timed wall time spent waiting for a core (measured, or
        estimated from the reference's stretch)."""
        if self.candidate_wait is not None and self.window is not None:
            return float(self.candidate_wait.sum() / max(self.window.sum(), 1e-12))
        return float(1.0 - self.unwaited().sum() / max(self.candidate.sum(), 1e-12))

    def _unwaited(self, wall: np.ndarray, cpu: np.ndarray | None, wait: np.ndarray | None) -> np.ndarray:
        if wait is not None:
            return np.maximum(wall - wait, 0.0)
        if cpu is None:
            return wall
        return np.maximum(wall - (self.stretch - 1.0) * cpu, 0.0)

    def unwaited(self) -> np.ndarray:
        """The model's wall seconds less the time it waited for a core: what each call would
        have taken on an idle machine, its idle waits (I/O, sleep) kept. Measured by the
        kernel where it says (runqueue_wait); else estimated as wall - (stretch - 1) x CPU from
        the reference workload, an over-estimate of the waiting when the calls ran several
        threads (their CPU time adds up), so never an under-estimate of the improvement."""
        if self.candidate_wait is not None and self.window is not None:
            # Out of the window it was read in: a little above the call's own time (the window
            # holds the readings, ~0.1 ms), as the champion's, so their ratio stays fair.
            return np.maximum(self.window - self.candidate_wait, 0.0)
        return self._unwaited(self.candidate, self.candidate_cpu, self.candidate_wait)

    def other_unwaited(self) -> np.ndarray:
        """The same for the second model's calls."""
        assert self.other is not None
        return self._unwaited(self.other, self.other_cpu, self.other_wait)


class _Clock:
    """Wall, CPU and wait-for-a-core seconds of the calls it measures."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.wait: list[float | None] = []
        self._at: tuple[float, float, float | None] | None = None

    # The readings nest (wall, CPU, wait ... wait, CPU, wall): every wait counted falls inside
    # the wall time it is taken out of, so the unwaited time is never below zero. The price:
    # the wall time holds two wait readings (~35 us each, a file per thread), which
    # pytest-benchmark's own figure for the call does not (the gates report that one).
    def start(self) -> None:
        t0 = time.perf_counter()
        c0 = time.process_time()
        self._at = (t0, c0, runqueue_wait())

    def stop(self) -> None:
        w1 = runqueue_wait()
        c1 = time.process_time()
        t1 = time.perf_counter()
        assert self._at is not None, "stop() without start()"
        t0, c0, w0 = self._at
        self.wall.append(t1 - t0)
        self.cpu.append(c1 - c0)
        self.wait.append(None if w0 is None or w1 is None else w1 - w0)

    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        self.start()
        fn(*args)
        self.stop()

    def waits(self) -> np.ndarray | None:
        return None if any(w is None for w in self.wait) else np.asarray(self.wait, float)


def interleaved(
    call: Callable[..., Any],
    next_args: Callable[[], tuple],
    rounds: int,
    *,
    other: Callable[..., Any] | None = None,
    benchmark: Any = None,
) -> Rounds:
    """`rounds` timed calls of `call(*next_args())`, each preceded by one timed reference
    workload, so that both see the same stretch of the machine's load; each call's CPU time
    and its wait for a core are taken too. With `other` (a champion's predict), it answers the
    same arguments in the same round, before the call in even rounds and after it in odd ones
    (a call late in a round is likelier to meet the end of the process's time slice).

    With `benchmark` (pytest-benchmark's fixture, not yet used in this test) the model's rounds
    are its rounds: `pedantic` times `call`, and its `setup`/`teardown` run the reference,
    `other` and the readings, untimed by it. Without, the same loop is timed here (a repeated
    measurement: the fixture times one per test).
    """
    ref, cand, oth = _Clock(), _Clock(), _Clock()
    current: list[tuple] = [()]

    # The call's own readings are taken in setup's last and teardown's first lines, outside
    # the time pytest-benchmark measures.
    def setup() -> tuple[tuple, dict]:
        args = current[0] = next_args()
        ref.run(reference_workload)
        if other is not None and len(ref.wall) % 2 == 1:
            oth.run(other, *args)
        cand.start()
        return args, {}

    def teardown(*_: Any) -> None:
        cand.stop()
        if other is not None and len(ref.wall) % 2 == 0:
            oth.run(other, *current[0])

    # The figure is the call's own time (pytest-benchmark's, or this loop's window); the wait is
    # taken out of the window it was read in (`window`), never out of a narrower one: with
    # pytest-benchmark's window the same model measured 0.85-0.95x itself on a busy machine.
    if benchmark is not None and not benchmark.disabled:
        benchmark.pedantic(call, setup=setup, teardown=teardown, rounds=rounds, iterations=1, warmup_rounds=0)
        wall = np.asarray(benchmark.stats.stats.data, float)
    else:
        for _ in range(rounds):
            args, _ = setup()
            call(*args)
            teardown()
        wall = np.asarray(cand.wall, float)
    arr = lambda xs: np.asarray(xs, float)  # noqa: E731
    return Rounds(
        wall,
        arr(cand.cpu),
        arr(ref.wall),
        arr(ref.cpu),
        arr(oth.wall) if other is not None else None,
        cand.waits(),
        arr(oth.cpu) if other is not None else None,
        oth.waits() if other is not None else None,
        window=arr(cand.wall),
    )


def stretch(wall: np.ndarray, cpu: np.ndarray, q: float = 90) -> float:
    """How much longer than its CPU time the reference took, at the q-th percentile of its
    rounds: 1.0 when this process ran uninterrupted (an idle machine: 1.00 here, even around a
    model that sleeps on I/O, which moves the wall times' own spread p90/p50 to 1.5), 3-4.8 with
    three busy loops on this 2-core machine, run back to back. Between a model's rounds it sees
    less: a 2 ms run just after the process got a core is rarely interrupted."""
    w, c = np.asarray(wall, float), np.maximum(np.asarray(cpu, float), 1e-9)
    return float(max(1.0, np.percentile(w / c, q)))


@contextlib.contextmanager
def busy_machine(processes: int = 4, limit_s: float = 150) -> Iterator[None]:
    """A machine made busy on purpose, to see what the timing gates make of it: `processes`
    busy-loop Python processes, each ending by itself after `limit_s` seconds and killed
    when the block ends (tests/test_latency_load.py, bench/verdicts.py)."""
    loop = f"import time\nend = time.time() + {limit_s}\nwhile time.time() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(processes)]
    try:
        time.sleep(0.5)  # the loops are running before the first round is timed
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)
