"""Robustness gates (hypothesis): perturbation specs drawn by hypothesis, one batched predict each.

The gates live in the installed package (pipeline.gates.robustness); this file selects them.
"""

from pipeline.gates.robustness import *  # noqa: F401,F403
