"""Latency gates (pytest-benchmark): single-row p99 and batch throughput.

The gates live in the installed package (pipeline.gates.latency); this file selects them.
"""

from pipeline.gates.latency import *  # noqa: F401,F403
