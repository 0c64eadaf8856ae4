"""Serving gates: the model served by `mlflow models serve` on loopback answers as in process.

The gates live in the installed package (pipeline.gates.serving); this file selects them.
"""

from pipeline.gates.serving import *  # noqa: F401,F403
