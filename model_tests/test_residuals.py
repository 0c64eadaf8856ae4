"""Residual gates (statsmodels): judged on effect sizes, with the p-values beside them.

The gates live in the installed package (pipeline.gates.residuals); this file selects them.
"""

from pipeline.gates.residuals import *  # noqa: F401,F403
