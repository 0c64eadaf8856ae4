"""Data gates: the evaluation rows meet the contract, are unseen, and have not drifted.

The gates live in the installed package (pipeline.gates.data); this file selects them.
"""

from pipeline.gates.data import *  # noqa: F401,F403
