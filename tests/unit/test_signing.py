from __future__ import annotations

from datetime import UTC, datetime

import pytest
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
