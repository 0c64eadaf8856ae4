"""Keeping the garbage collector off a big, long-lived heap: a process that ran gates or talked
to MLflow ends quickly, and a server does not stall an answer to trace what it loaded.

Kept light (no import beyond the standard library): the CLI registers it for every command.
"""

from __future__ import annotations

import atexit
import gc

_EXIT_REGISTERED = False


def collect_then_freeze() -> None:
    """Collect garbage once, then freeze every survivor out of the collector's view: later
    collections trace only what is allocated after this."""
    gc.collect()  # garbage cycles are finalised as they would be (their files flushed, ...)
    gc.freeze()


def fast_interpreter_exit() -> None:
    """At this process's exit, collect garbage once and freeze what survives: the interpreter's
    teardown then clears its modules without tracing the whole heap of a gate run again and
    again (mlflow, sklearn, pandas, scipy and the run's frames: 1.9 s -> 0.4 s here). Every
    atexit handler still runs (those registered before this one after it, with the survivors
    frozen), and nothing happens before exit."""
    global _EXIT_REGISTERED
    if not _EXIT_REGISTERED:
        _EXIT_REGISTERED = True
        atexit.register(collect_then_freeze)
