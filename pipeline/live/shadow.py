"""Shadow scoring in a worker process: the arm that did not answer a row scores it off the
answer's path.

Scored in a thread of the serving process, the other arm's predict held the interpreter lock
the answers need: one row's answer took 22.1 ms at p50 with a challenger in the shadow against
10.9 ms alone (bench/live.py). So the serving process only hands each request's rows to a
worker process through a bounded queue (nothing is waited for: a full queue skips the rows
and counts them), and a reader thread turns what comes back into prediction log rows. The
worker runs at a lower priority than the answers, loads each version it is asked for from the
registry once, and ends when its parent does. A worker that dies is counted (its rows as
failed) and started again.

Workers are forked from multiprocessing's fork server, a clean single-threaded process started
once per serving process with MLflow and the registry code imported (PRELOAD): a fork of the
serving process itself would inherit its threads and the OpenMP runtime's state, which a forked
child must not use, and a spawned worker would import MLflow again for every service (4-5 s
here against ~1 s for loading the models).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline import registry
from pipeline.config import Settings
from pipeline.live.log import answer_rows

NICE = 10  # the worker yields a busy core to the answers
PRELOAD = ["pipeline.registry", "mlflow.pyfunc", "pandas", "sklearn"]  # imported once, in the fork server
KEEP_MODELS = 4  # versions the worker keeps loaded (an alias move brings one more)
READY = -1  # the worker's first message: the versions it started with are loaded

# (arm, version, row indices) of one request; the callback gets these back with, per part,
# the predictions (None when scoring failed) and the milliseconds predict took.
Part = tuple[str, str, list[int]]
Outcome = tuple[list[float] | None, float]


class ShadowScorer:
    """One worker process and the bounded queue that feeds it."""

    def __init__(self, settings: Settings, done: Callable[[Any, list[Part], list[Outcome]], None], *, maxsize: int):
        self.settings, self._done, self._maxsize = settings, done, maxsize
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._ids = itertools.count()
        self._pending: dict[int, tuple[Any, list[Part]]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.skipped = 0  # rows not scored: the queue was full
        self.restarts = 0
        self.last_error: str | None = None
        self.ready = threading.Event()  # the worker has loaded the versions it was started with
        self._versions: list[str] = []
        self._process: Any = None  # the worker (a forkserver Process)
        self._jobs: Any = None  # its job and result queues (multiprocessing queues)
        self._results: Any = None
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self, versions: list[str], ready_timeout: float = 60.0) -> ShadowScorer:
        """Start the worker with `versions` loaded and wait (up to `ready_timeout`) until it is
        ready, so the first answers are shadow-scored too; past it, serving goes on and the
        rows queue (or are skipped and counted) until the worker catches up."""
        self._versions = list(versions)
        self._spawn()
        self._reader = threading.Thread(target=self._read, name="shadow-reader", daemon=True)
        self._reader.start()
        if not self.ready.wait(ready_timeout):
            self.last_error = f"shadow worker not ready after {ready_timeout:g} s"
        return self

    def _spawn(self) -> None:
        """A new worker with its own queues (under the lock when one is replaced: no job goes to
        the old queue after its pending rows were counted)."""
        self.ready.clear()
        self._jobs = self._ctx.Queue(self._maxsize)
        self._results = self._ctx.Queue()
        self._process = self._ctx.Process(
            target=work,
            args=(self.settings, self._versions, self._jobs, self._results),
            name="shadow-scorer",
            daemon=True,
        )
        self._process.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        """Let the worker finish what is queued (up to `timeout`), then end it."""
        self._stopping.set()
        if self._process is None:
            return
        try:
            self._jobs.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        if self._reader is not None:
            self._reader.join(timeout)
        for q in (self._jobs, self._results):
            q.close()
            q.cancel_join_thread()  # never block this process's exit on a queue the worker no longer reads

    # ------------------------------------------------------------ the answer's side

    def submit(self, context: Any, frame, parts: list[Part]) -> bool:
        """Queue a request's rows for scoring; False (the rows counted as skipped) when the queue is full."""
        if not parts:
            return True
        job = next(self._ids)
        with self._lock:  # the job and its queue belong to the same worker (see _died)
            try:
                self._jobs.put_nowait((job, frame, [(version, idx) for _, version, idx in parts]))
            except (queue.Full, ValueError, AttributeError, OSError):  # full, or closed at stop
                self.skipped += sum(len(idx) for _, _, idx in parts)
                return False
            self._pending[job] = (context, parts)
        return True

    def pending(self) -> int:
        return len(self._pending)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued request is scored (for feedback and tests; never on the answer path)."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._pending

    # ------------------------------------------------------------ the results' side

    def _read(self) -> None:
        while True:
            try:
                item = self._results.get(timeout=0.5)
            except queue.Empty:
                if self._stopping.is_set() and (not self._process.is_alive() or not self._pending):
                    return
                if not self._process.is_alive():
                    self._died()
                continue
            except Exception:  # the queue closed at stop, or a message cut short by a killed worker
                if self._stopping.is_set():
                    return
                if not self._process.is_alive():
                    self._died()
                else:
                    time.sleep(0.1)
                continue
            if item is None:  # the worker ended at stop
                return
            job, outcomes = item
            if job == READY:
                self.ready.set()
                continue
            with self._lock:
                context, parts = self._pending.pop(job, (None, None))
            if parts is not None:
                try:
                    self._done(context, parts, outcomes)
                except Exception as e:  # the callback's fault must not end the reader
                    self.last_error = f"{type(e).__name__}: {e}"[:300]

    def _died(self) -> None:
        """The worker ended on its own (killed, out of memory): what it held is failed, a new one starts."""
        self._process.join(1)
        self.last_error = f"shadow worker ended with exit code {self._process.exitcode}"
        old = self._jobs, self._results
        with self._lock:
            lost, self._pending = self._pending, {}
            if not self._stopping.is_set():
                self.restarts += 1
                self._spawn()
        for q in old:
            q.close()
            q.cancel_join_thread()
        for context, parts in lost.values():
            try:
                self._done(context, parts, [(None, 0.0)] * len(parts))
            except Exception:
                pass


def work(settings: Settings, versions: list[str], jobs, results) -> None:
    """The worker: load `versions`, say so, then predict each job's rows with the versions asked
    for, until told to stop or its parent is gone."""
    try:
        os.nice(NICE)
    except OSError:
        pass
    name = settings.mlflow.registered_model
    models: dict[str, Any] = {}

    def model(version: str):
        if version not in models:
            if len(models) >= KEEP_MODELS:
                models.pop(next(iter(models)))
            models[version] = registry.load_pyfunc(settings, f"models:/{name}/{version}", check_requirements=False)
        return models[version]

    for version in versions:
        try:
            model(version)
        except Exception:  # tried again, and counted, when a job asks for it
            pass
    results.put((READY, None))
    parent = multiprocessing.parent_process()
    while True:
        try:
            job = jobs.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if job is None:
            results.put(None)
            return
        job_id, frame, parts = job
        outcomes: list[Outcome] = []
        for version, idx in parts:
            try:
                predict = model(version).predict
                rows = frame if len(idx) == len(frame) else frame.iloc[idx]
                t0 = time.perf_counter()
                answers = answer_rows(predict(rows))
                outcomes.append((answers, 1000 * (time.perf_counter() - t0)))
            except Exception:  # a shadow failure never reaches the caller: counted by the parent
                outcomes.append((None, 0.0))
        results.put((job_id, outcomes))
