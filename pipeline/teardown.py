"""A process that ran gates or talked to MLflow ends quickly.

Kept light (no import beyond the standard library): the CLI registers it for every command.
"""

from __future__ import annotations

import atexit
import gc

_EXIT_REGISTERED = False


def _collect_then_freeze() -> None:
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
        atexit.register(_collect_then_freeze)
