"""Keeping tests away from any real AWS account: fake credentials, no profile, and the endpoint of a moto."""

from __future__ import annotations

from pathlib import Path

import pytest

# Variables that would point boto3 at a real account or a role to assume.
REAL_ACCOUNT_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


def use_fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, region: str, endpoint_url: str | None) -> None:
    """Fake credentials in `region`; AWS_ENDPOINT_URL at `endpoint_url` (a moto server), or unset for an
    in-process moto."""
    for name in REAL_ACCOUNT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if endpoint_url is None:
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)
