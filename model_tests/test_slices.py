"""Slice gate: no slice with enough rows has an error far above the overall error (MAE or MAPE, by config).

The gates live in the installed package (pipeline.gates.slices); this file selects them.
"""

from pipeline.gates.slices import *  # noqa: F401,F403
