"""The held keys on real DynamoDB (moto): one never-expiring item per subscription, one string set per held
key; holding and releasing are idempotent, interleave safely, and a key whose set empties is no longer held."""

from __future__ import annotations

import pytest

from dispatcher.adapters.held_keys import KEYS_PER_UPDATE, DynamoDbHeldKeys
from tests.integration.conftest import AwsResources

pytestmark = pytest.mark.integration


def held_keys(aws: AwsResources, subscription: str = "orders-to-billing") -> DynamoDbHeldKeys:
    return DynamoDbHeldKeys(aws.table, subscription, client_factory=lambda: aws.dynamodb)


def test_nothing_is_held_before_anything_was_held(aws: AwsResources) -> None:
    # Given a table with no held-keys item
    # When the held keys are read
    # Then none is held
    assert held_keys(aws).read() == {}


def test_held_entries_are_read_back_per_key_in_one_consistent_read_after_one_write(aws: AwsResources) -> None:
    # Given the held keys of a subscription
    store = held_keys(aws)
    aws.requests.clear()

    # When two keys' entries are held
    store.hold({"k0001": frozenset({"e1", "e2"}), "k0002": frozenset({"e3"})})

    # Then they are read back per key, for one UpdateItem and one GetItem
    assert store.read() == {"k0001": frozenset({"e1", "e2"}), "k0002": frozenset({"e3"})}
    assert aws.requests.of("dynamodb") == ["UpdateItem", "GetItem"]


def test_the_item_is_keyed_by_subscription_and_never_expires(aws: AwsResources) -> None:
    # Given a held key
    held_keys(aws).hold({"k0001": frozenset({"e1"})})

    # When the table is read
    (item,) = aws.table_items()

    # Then the item is "<subscription>#held", with no expiry attribute for the table's TTL to act on
    assert item["pk"] == {"S": "orders-to-billing#held"}
    assert set(item) == {"pk", "k0001"}


def test_a_key_stays_held_until_its_last_entry_is_released(aws: AwsResources) -> None:
    # Given a key held by two entries, held by two invocations
    store = held_keys(aws)
    store.hold({"k0001": frozenset({"e1"})})
    store.hold({"k0001": frozenset({"e2"})})

    # When one entry is released
    store.release({"k0001": frozenset({"e1"})})

    # Then the key is still held by the other
    assert store.read() == {"k0001": frozenset({"e2"})}

    # When the last one is released
    store.release({"k0001": frozenset({"e2"})})

    # Then the key is no longer held: its set is gone
    assert store.read() == {}
    assert set(aws.table_items()[0]) == {"pk"}


def test_holding_and_releasing_again_change_nothing(aws: AwsResources) -> None:
    # Given entries held twice (a re-sent batch handed over again)
    store = held_keys(aws)
    entries = {"k0001": frozenset({"e1", "e2"})}
    store.hold(entries)
    store.hold(entries)
    assert store.read() == entries

    # When they are released twice, and entries never held are released
    store.release(entries)
    store.release(entries)
    store.release({"k0009": frozenset({"e9"})})

    # Then nothing is held and nothing failed
    assert store.read() == {}


def test_subscriptions_sharing_the_table_never_see_each_others_keys(aws: AwsResources) -> None:
    # Given two subscriptions holding the same key attribute
    billing, ledger = held_keys(aws, "orders-to-billing"), held_keys(aws, "orders-to-ledger")
    billing.hold({"k0001": frozenset({"e1"})})
    ledger.hold({"k0001": frozenset({"e2"})})

    # When one releases its entry
    billing.release({"k0001": frozenset({"e1"})})

    # Then only its own key is released
    assert billing.read() == {}
    assert ledger.read() == {"k0001": frozenset({"e2"})}


def test_more_keys_than_one_update_expression_takes_are_held_in_several_writes(aws: AwsResources) -> None:
    # Given more held keys than one UpdateItem carries
    store = held_keys(aws)
    entries = {
        f"k{key:032x}": frozenset({f"entry-{key}-a", f"entry-{key}-b"}) for key in range(KEYS_PER_UPDATE * 2 + 50)
    }
    aws.requests.clear()

    # When they are held, and then released
    store.hold(entries)
    held = store.read()
    store.release(entries)

    # Then every one was held, in as few writes as DynamoDB's expression limits allow, and all are released
    assert held == entries
    assert aws.requests.of("dynamodb") == ["UpdateItem"] * 3 + ["GetItem"] + ["UpdateItem"] * 3
    assert store.read() == {}


def test_empty_sets_are_not_written(aws: AwsResources) -> None:
    # Given entries with nothing to hold
    store = held_keys(aws)
    aws.requests.clear()

    # When they are held and released
    store.hold({"k0001": frozenset()})
    store.release({})

    # Then DynamoDB was not asked (it has no empty sets)
    assert aws.requests.of("dynamodb") == []


def test_an_attribute_name_that_is_not_a_held_key_is_refused_naming_it(aws: AwsResources) -> None:
    # Given an attribute name the reader would not recognise as a held key
    store = held_keys(aws)

    # When it is held
    with pytest.raises(ValueError, match="held key attribute 'pk' does not start with 'k'"):
        store.hold({"k0001": frozenset({"e1"}), "pk": frozenset({"e2"})})

    # Then nothing was written
    assert aws.table_items() == []
