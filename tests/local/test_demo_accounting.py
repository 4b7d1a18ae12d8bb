"""The demo's own account of order: judged against the order it produced its events in."""

from __future__ import annotations

from typing import Any

from local.demo import accepted_out_of_produced_order


def produced(*events: tuple[str, str, int]) -> dict[str, dict[str, Any]]:
    return {webhook_id: {"customer": key, "number": number} for webhook_id, key, number in events}


EVENTS = produced(("e1", "c1", 1), ("e2", "c2", 2), ("e3", "c1", 3), ("e4", "c1", 4))


def test_events_taken_in_produced_order_per_key_are_in_order() -> None:
    # Given the receiver took each key's events in produced order, keys interleaved freely
    # When the demo judges the order
    # Then nothing is out of order
    assert accepted_out_of_produced_order(["e2", "e1", "e3", "e4"], EVENTS) == 0


def test_an_event_taken_after_a_later_one_of_its_key_is_out_of_order() -> None:
    # Given e3 and e4 (customer c1) were taken before e1 (c1), which went out once they had been delivered
    # When the demo judges the order
    # Then e1 counts once, however many later events passed it
    assert accepted_out_of_produced_order(["e3", "e4", "e1", "e2"], EVENTS) == 1


def test_events_never_taken_and_unknown_ids_do_not_count() -> None:
    # Given e1 was parked (never taken) and the receiver also took an id the demo never produced
    # When the demo judges the order
    # Then neither counts against the order
    assert accepted_out_of_produced_order(["e3", "canary", "e4"], EVENTS) == 0
