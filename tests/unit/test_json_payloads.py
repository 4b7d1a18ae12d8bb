"""Reading a payload's JSON (records.read_json): pydantic-core's reader first, for speed, but never a verdict
of its own. Whatever it reads, the standard library reads the same document; whatever it refuses, the standard
library decides. So a payload's Content-Type and webhook-id are what the standard library alone made them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.records import read_json

STANDARD_LIBRARY = json.JSONDecoder(parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))

text_with_surrogates = st.text(st.characters(codec=None), max_size=30)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text_with_surrogates,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text_with_surrogates, children, max_size=4),
    max_leaves=20,
)
hostile_payloads = st.one_of(
    documents.map(lambda document: json.dumps(document).encode("utf-8", "surrogatepass")),
    documents.map(lambda document: json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.integers(150, 1_200).map(lambda depth: b"[" * depth + b"]" * depth),  # around both readers' depth limits
    st.integers(4_280, 4_320).map(lambda digits: b'{"n": ' + b"9" * digits + b"}"),  # around Python's int limit
    st.sampled_from(
        [b"NaN", b"-Infinity", b'{"id": 1e999}', b"\xef\xbb\xbf{}", b'{"a":1,}', b'{"id":"\x01"}', b"", b" 1 "]
    ),
    st.binary(max_size=40),
)


def standard_verdict(payload: bytes) -> tuple[bool, Any]:
    try:
        return True, STANDARD_LIBRARY.decode(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return False, None


def verdict(payload: bytes) -> tuple[bool, Any]:
    try:
        return True, read_json(payload)
    except (ValueError, RecursionError):
        return False, None


@pytest.mark.adversarial
@given(hostile_payloads)
def test_read_json_reads_what_the_standard_library_reads(payload: bytes) -> None:
    # Given any payload, hostile JSON included
    # When it is read for its JSON
    is_json, document = verdict(payload)
    # Then it is JSON exactly when the standard library says so, and the same document
    expected_is_json, expected = standard_verdict(payload)
    assert is_json == expected_is_json
    assert json.dumps(document, sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize(
    ("payload", "is_json"),
    [
        (b'{"id": "\\udfff"}', True),  # a lone surrogate: pydantic-core refuses it, the standard library reads it
        (b"[" * 500 + b"]" * 500, True),  # deeper than pydantic-core's 200 levels
        (b'{"id": NaN}', False),
        (b'{"n": ' + b"9" * 5_000 + b"}", False),  # more digits than Python's integers take
        (b"\xff{}", False),
    ],
)
def test_what_pydantic_core_refuses_the_standard_library_decides(payload: bytes, is_json: bool) -> None:
    # Given a payload one reader refuses (or both do)
    # When it is read
    # Then the verdict is the standard library's
    assert verdict(payload)[0] is is_json
    assert verdict(payload) == standard_verdict(payload)
