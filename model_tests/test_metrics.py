"""Metric gates: R2, MAE, RMSE and MAPE on the evaluation rows, each against its threshold.

The gates live in the installed package (pipeline.gates.metrics); this file selects them.
"""

from pipeline.gates.metrics import *  # noqa: F401,F403
