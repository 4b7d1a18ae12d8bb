"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per secret.

The secret string holds one or more `whsec_` secrets separated by whitespace, newest first. Every one
of them signs, so a receiver holding either the old or the new secret verifies during a rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # Standard Webhooks asks for at least 24 random bytes


class SigningSecretError(ValueError):
    """The signing secret is malformed. The message never contains secret material."""


@dataclass(frozen=True, slots=True)
class SigningKeys:
    keys: tuple[bytes, ...] = field(repr=False)  # secret material: never in a log line or a traceback
    # One HMAC per key with the key already absorbed, copied for each signature: keying an HMAC (hashing the
    # padded key twice) was more than half the cost of signing a small record.
    _keyed: tuple[hmac.HMAC, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keyed = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in self.keys)
        object.__setattr__(self, "_keyed", keyed)  # a frozen dataclass sets its derived fields this way

    @classmethod
    def parse(cls, secret_string: str) -> SigningKeys:
        entries = secret_string.split()
        if not entries:
            raise SigningSecretError("signing secret is empty: expected one or more whsec_ secrets")
        keys = []
        for position, entry in enumerate(entries, start=1):
            if not entry.startswith(SECRET_PREFIX):
                raise SigningSecretError(f"signing secret entry {position} does not start with {SECRET_PREFIX!r}")
            try:
                key = base64.b64decode(entry[len(SECRET_PREFIX) :], validate=True)
            except (binascii.Error, ValueError):
                raise SigningSecretError(f"signing secret entry {position} is not valid base64") from None
            if len(key) < MIN_SECRET_BYTES:
                raise SigningSecretError(
                    f"signing secret entry {position} has {len(key)} bytes; at least {MIN_SECRET_BYTES} required"
                )
            keys.append(key)
        return cls(tuple(keys))

    def signature_header(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` value: one `v1,` entry per active secret, space-separated."""
        signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
        if len(self._keyed) == 1:  # no rotation under way, nearly always: no generator and join per record
            return _signature(self._keyed[0], signed)
        return " ".join(_signature(keyed, signed) for keyed in self._keyed)


def _signature(keyed: hmac.HMAC, message: bytes) -> str:
    """One `v1,` entry. binascii directly: base64.b64encode is a Python wrapper that adds a call per record."""
    mac = keyed.copy()
    mac.update(message)
    return "v1," + binascii.b2a_base64(mac.digest(), newline=False).decode()
