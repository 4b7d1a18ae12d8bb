"""Hypothesis profiles shared by every suite.

`make test` runs the properties with the bounded `default` profile so that the suite stays fast on a
busy 2-CPU machine; `make fuzz` selects `fuzz` (HYPOTHESIS_PROFILE=fuzz) and runs the adversarial
properties (marker `adversarial`) for much longer. No deadline in either: these machines are shared and
noisy, and a property must fail on behaviour, never on timing.

`default` is derandomized: each property tries the same examples on every run of the same code, so CI
fails on a change, never on the luck of a draw (a random draw once failed CI on a test's own flaw, with
nothing changed). Searching is what `make fuzz` is for: random, and two hundred times as many examples.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 100
FUZZ_EXAMPLES = 20_000

settings.register_profile("default", max_examples=DEFAULT_EXAMPLES, deadline=None, derandomize=True)
settings.register_profile(
    "fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
