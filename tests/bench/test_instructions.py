"""`python -m bench --instructions` reads callgrind's count from what valgrind prints at exit; the counting itself
runs for minutes under valgrind and is left to the benchmark."""

from __future__ import annotations

import pytest

from bench.instructions import parse_collected

VALGRIND_EXIT = """==4242== Callgrind, a call-graph generating cache profiler
==4242== Events    : Ir
==4242== Collected : 1094066786
==4242==
==4242== I   refs:      1,094,066,786
"""


def test_the_count_is_what_callgrind_collected() -> None:
    # Given what valgrind printed when the subject exited
    # Then the count is the instructions callgrind collected
    assert parse_collected(VALGRIND_EXIT) == 1_094_066_786


def test_output_without_a_count_names_what_was_printed() -> None:
    # Given a subject that died before callgrind could count (a traceback instead of the summary)
    printed = "Traceback (most recent call last):\n  ModuleNotFoundError: No module named 'bench'\n"
    # Then the error says so and shows what was printed
    with pytest.raises(RuntimeError, match="no instruction count") as raised:
        parse_collected(printed)
    assert "ModuleNotFoundError" in str(raised.value)
