"""Determinism gates: the same inputs and seed give the same predictions, however asked.

The gates live in the installed package (pipeline.gates.determinism); this file selects them.
"""

from pipeline.gates.determinism import *  # noqa: F401,F403
