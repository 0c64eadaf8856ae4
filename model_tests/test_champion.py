"""Champion gate: the candidate is not worse than the model holding the champion alias.

The gates live in the installed package (pipeline.gates.champion); this file selects them.
"""

from pipeline.gates.champion import *  # noqa: F401,F403
