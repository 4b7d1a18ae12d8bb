"""`make bench`: the figures of issue 2 section 11, measured side by side in one run.

Not a timed test: it prints each figure with its target and PASS/MISS, and never fails the build.
"""
