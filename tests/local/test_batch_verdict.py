"""How a mapping reads one invocation's response (Lambda's partial-batch-response rules, as AWS was recorded
applying them in LocalStack's test_lambda_integration_kinesis and SQS snapshots)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.esm import BatchVerdict, judge
from local.workers import InvocationResult

BATCH = {"101", "102", "103"}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4) | st.sampled_from(sorted(BATCH)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=14), children, max_size=3),
    max_leaves=12,
)


def answered(response: object) -> InvocationResult:
    return InvocationResult("request-1", response=response)


@pytest.mark.parametrize(
    "response",
    [None, {}, {"batchItemFailures": None}, {"batchItemFailures": []}],
    ids=["null", "empty object", "null list", "empty list"],
)
def test_an_empty_answer_is_full_success(response: object) -> None:
    # Given a function that answered with nothing to report, When its answer is judged, Then the batch succeeded
    assert judge(answered(response), BATCH, report_batch_item_failures=True).succeeded


def test_reported_identifiers_are_the_failures() -> None:
    # Given an answer reporting two records of the batch
    response = {"batchItemFailures": [{"itemIdentifier": "102"}, {"itemIdentifier": "103"}]}
    # When it is judged, Then exactly those two failed and the batch as a whole did not
    assert judge(answered(response), BATCH, report_batch_item_failures=True) == BatchVerdict(
        reported_failures=frozenset({"102", "103"})
    )


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ([], "response is not a JSON object"),
        ({"batchItemFailures": {"itemIdentifier": "101"}}, "batchItemFailures is not a list"),
        ({"batchItemFailures": [{"identifier": "101"}]}, "batch item failure without itemIdentifier"),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, "empty or null itemIdentifier"),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, "empty or null itemIdentifier"),
        ({"batchItemFailures": [{"itemIdentifier": "999"}]}, "itemIdentifier not in the batch"),
    ],
)
def test_an_invalid_partial_response_fails_the_whole_batch_saying_why(response: object, reason: str) -> None:
    # Given an answer Lambda rejects, When it is judged
    verdict = judge(answered(response), BATCH, report_batch_item_failures=True)
    # Then the whole batch failed, and the reason names what was wrong
    assert verdict.whole_batch_failed
    assert (verdict.reason or "").startswith(reason)


def test_without_report_batch_item_failures_the_answer_is_ignored_and_an_error_still_fails_the_batch() -> None:
    # Given a mapping without ReportBatchItemFailures, When an invalid answer and a function error are judged
    ignored = judge(answered([]), BATCH, report_batch_item_failures=False)
    errored = judge(InvocationResult("request-2", error="ValueError: boom"), BATCH, report_batch_item_failures=False)
    # Then the answer counts as success, and the error fails the whole batch with its message
    assert ignored.succeeded
    assert (errored.whole_batch_failed, errored.reason) == (True, "ValueError: boom")


@pytest.mark.adversarial
@given(response=JSON_VALUES)
def test_any_answer_is_judged_without_raising_and_never_names_a_record_outside_the_batch(response: object) -> None:
    # Given any JSON answer at all, When it is judged
    verdict = judge(answered(response), BATCH, report_batch_item_failures=True)
    # Then either the whole batch failed with a reason, or the failures are records of the batch
    if verdict.whole_batch_failed:
        assert verdict.reason
    else:
        assert verdict.reported_failures <= BATCH
