"""Hypothesis profiles of the fuzz tests.

`ci` (the default) is deterministic (`derandomize=True`: the same examples on every run and
machine), has no deadline (a slow first call, e.g. importing torch, is not a failure) and
writes no example database into the repository. Each test sets its own example budget with
`fuzzlib.budget`, sized so the whole suite stays well under a minute on two cores.

For a deeper hunt, run with a random seed and more examples:
`POLYFUSE_FUZZ_PROFILE=hunt POLYFUSE_FUZZ_SCALE=20 pytest tests/fuzz`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("hunt", derandomize=False, **_COMMON)
settings.load_profile(os.environ.get("POLYFUSE_FUZZ_PROFILE", "ci"))
