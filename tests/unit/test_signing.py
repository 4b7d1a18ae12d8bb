from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatcher.signing import SigningKeys, SigningSecretError
from tests.fakes import OLD_SECRET, SECRET


def headers_for(keys: SigningKeys, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": keys.signature_header("msg_1", timestamp, body),
    }


def test_signature_verifies_with_the_reference_library() -> None:
    now = int(datetime.now(tz=UTC).timestamp())
    body = b'{"type":"order.created"}'
    headers = headers_for(SigningKeys.parse(SECRET), body, now)
    assert Webhook(SECRET).verify(body, headers) == {"type": "order.created"}


def test_every_secret_of_a_rotation_signs() -> None:
    # Given the new secret first and the old one second
    now = int(datetime.now(tz=UTC).timestamp())
    body = b'{"n":1}'
    headers = headers_for(SigningKeys.parse(f"{SECRET}\n  {OLD_SECRET}"), body, now)
    # Then receivers holding either secret verify
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(SECRET).verify(body, headers) == {"n": 1}
    assert Webhook(OLD_SECRET).verify(body, headers) == {"n": 1}


@given(st.lists(st.text(), min_size=2, max_size=5))
def test_one_set_of_keys_signs_message_after_message_each_on_its_own(texts: list[str]) -> None:
    # Given one parsed secret pair, as a warm function keeps it, signing several bodies in turn
    keys = SigningKeys.parse(f"{SECRET} {OLD_SECRET}")
    now = int(datetime.now(tz=UTC).timestamp())
    documents = [{"text": text} for text in texts]
    signed = [(json.dumps(document).encode(), document) for document in documents]
    headers = [headers_for(keys, body, now) for body, _ in signed]
    # Then every signature verifies for its own body with either secret: nothing of one message is in the next
    for (body, document), body_headers in zip(signed, headers, strict=True):
        for secret in (SECRET, OLD_SECRET):
            assert Webhook(secret).verify(body, body_headers) == document


def test_signing_keys_never_show_the_secret() -> None:
    keys = SigningKeys.parse(SECRET)
    assert repr(keys.keys[0]) not in repr(keys)


def test_tampered_body_does_not_verify() -> None:
    now = int(datetime.now(tz=UTC).timestamp())
    headers = headers_for(SigningKeys.parse(SECRET), b'{"n":1}', now)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"n":2}', headers)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "signing secret is empty"),
        ("sk_live_abc", "entry 1 does not start with 'whsec_'"),
        (f"{SECRET} whsec_***", "entry 2 is not valid base64"),
        ("whsec_c2hvcnQ=", "entry 1 has 5 bytes; at least 24 required"),
    ],
)
def test_malformed_secret_is_refused_without_echoing_it(secret: str, message: str) -> None:
    with pytest.raises(SigningSecretError) as error:
        SigningKeys.parse(secret)
    assert message in str(error.value)
    assert SECRET not in str(error.value)
