"""The signing secret from Secrets Manager, fetched lazily and cached across warm invocations."""

from __future__ import annotations

SECRET_CACHE_SECONDS = 300  # a rotated secret is picked up within five minutes


class SecretsManagerSecret:
    def __init__(self, secret_id: str, max_age_seconds: int = SECRET_CACHE_SECONDS) -> None:
        self._secret_id = secret_id
        self._max_age = max_age_seconds

    def get(self) -> str:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_secret(self._secret_id, max_age=self._max_age)
        return value.decode() if isinstance(value, bytes) else str(value)
