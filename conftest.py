"""Root conftest: what belongs to this repository only. The plugin comes from the package."""

import os

from hypothesis import HealthCheck, settings

# ci: the same examples on every run, no deadline on a shared machine, no example database.
settings.register_profile(
    "ci", derandomize=True, max_examples=20, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# dev: fresh examples each run, remembered failures replayed first.
settings.register_profile("dev", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
