"""Calibration gates (classifiers): a probability of 0.3 comes true three times in ten.

The gates live in the installed package (pipeline.gates.calibration); this file selects them.
"""

from pipeline.gates.calibration import *  # noqa: F401,F403
