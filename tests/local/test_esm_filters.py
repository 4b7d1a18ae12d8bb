"""Lambda's filter-pattern rules (FilterCriteria) and partial-batch-response rules, without any AWS."""

from __future__ import annotations

from typing import Any

import pytest

from local.esm import FilterPatternError, judge, matches_any
from local.esm.filters import validate_patterns
from local.workers import InvocationResult

ORDER = {"data": {"type": "order.created", "amount": 120, "tags": ["vip", "eu"], "note": None, "paid": True}}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"data": {"type": ["order.created"]}}, True),
        ({"data": {"type": ["order.cancelled", "order.created"]}}, True),
        ({"data": {"type": ["order.cancelled"]}}, False),
        ({"data": {"amount": [120.0]}}, True),
        ({"data": {"paid": [True]}}, True),
        ({"data": {"amount": [True]}}, False),
        ({"data": {"note": [None]}}, True),
        ({"data": {"tags": ["eu"]}}, True),
        ({"data": {"type": [{"prefix": "order."}]}}, True),
        ({"data": {"type": [{"suffix": ".created"}]}}, True),
        ({"data": {"type": [{"equals-ignore-case": "ORDER.CREATED"}]}}, True),
        ({"data": {"type": [{"exists": True}]}}, True),
        ({"data": {"missing": [{"exists": False}]}}, True),
        ({"data": {"missing": [{"exists": True}]}}, False),
        ({"data": {"type": [{"anything-but": ["order.cancelled"]}]}}, True),
        ({"data": {"type": [{"anything-but": "order.created"}]}}, False),
        ({"data": {"type": [{"anything-but": {"prefix": "order."}}]}}, False),
        ({"data": {"amount": [{"numeric": [">", 100, "<=", 120]}]}}, True),
        ({"data": {"amount": [{"numeric": ["<", 100]}]}}, False),
        ({"data": {"type": ["order.created"], "amount": [1]}}, False),
        ({"data": {"missing": ["x"]}}, False),
        ({"data": {"type": {"nested": ["x"]}}}, False),
    ],
)
def test_a_pattern_matches_as_lambda_filtering_does(pattern: dict[str, Any], expected: bool) -> None:
    # Given a record document and a pattern; When it is matched; Then the result is Lambda's
    assert matches_any([pattern], ORDER) is expected


def test_several_patterns_pass_a_record_matching_any_of_them() -> None:
    patterns: list[dict[str, Any]] = [{"data": {"type": ["order.cancelled"]}}, {"data": {"amount": [120]}}]
    assert matches_any(patterns, ORDER)


def test_no_patterns_pass_everything() -> None:
    assert matches_any([], {"anything": 1})


@pytest.mark.parametrize(
    "pattern",
    [{}, {"data": "order.created"}, {"data": []}, {"data": [{"regex": "x"}]}, {"data": [{"numeric": [">", "a"]}]}],
    ids=["empty", "leaf-not-a-list", "empty-list", "unsupported-operator", "numeric-bound-not-a-number"],
)
def test_an_unsupported_pattern_is_refused_up_front(pattern: dict[str, Any]) -> None:
    with pytest.raises(FilterPatternError):
        validate_patterns([pattern])


def test_a_function_error_fails_the_whole_batch_even_with_a_response() -> None:
    result = InvocationResult("r", response={"batchItemFailures": []}, error="Boom: x")
    assert judge(result, {"1"}, report_batch_item_failures=True).whole_batch_failed


def test_reported_identifiers_are_the_partial_failures() -> None:
    result = InvocationResult("r", response={"batchItemFailures": [{"itemIdentifier": "2"}]})
    verdict = judge(result, {"1", "2"}, report_batch_item_failures=True)
    assert (verdict.whole_batch_failed, verdict.reported_failures) == (False, frozenset({"2"}))
