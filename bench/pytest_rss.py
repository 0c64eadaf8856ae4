"""pytest.main(argv), then this process's peak RSS and wall time as JSON in $BENCH_RSS_FILE.

    BENCH_RSS_FILE=out.json python bench/pytest_rss.py model_tests -m "gates and data" ...

One gate family per process, so ru_maxrss is that family's peak (data, model and figures
together), not the largest of several families run in one session.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402


def main() -> int:
    code = int(pytest.main(sys.argv[1:]))
    out = {
        "exit": code,
        "wall_s": time.perf_counter() - T0,
        # Linux reports ru_maxrss in KiB.
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "children_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    path = os.environ.get("BENCH_RSS_FILE")
    if path:
        with open(path, "w") as f:
            json.dump(out, f)
    else:
        print(json.dumps(out), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
