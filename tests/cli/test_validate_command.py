"""`dispatcher validate` on the shipped registry and on broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from tests.cli.conftest import SHIPPED_REGISTRY, RegistryCopier
from tests.hostile_spellings import fullwidth

BROKEN_TEAM = """\
team: payments
alerts_email: payments-oncall@example.com
subscriptions:
  - name: ledger-hook
    source: stream/orders
    endpoint: https://ledger.example.com/hooks
    batch_size: 0
  - name: orphan-hook
    source: stream/payments
    endpoint: https://ledger.example.com/orphans
  - name: Bad_Name
    source: queue/refunds.fifo
    endpoint: https://psp.example.com/[refunds]
"""
PLAIN_HTTP_TEAM = """\
team: payments
alerts_email: payments-oncall@example.com
subscriptions:
  - name: ledger-hook
    source: stream/orders
    endpoint: http://ledger.example.com/hooks
    allow_http: true
"""

SECRET_VALUE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOSTILE_TEAM = f"""\
team: payments
alerts_email: payments-oncall@example.com
subscriptions:
  - name: loopback-hook
    source: stream/orders
    endpoint: https://{fullwidth("127.0.0.1")}:9001/hooks
    allow_private_cidrs: ["127.0.0.0/8"]
  - name: legacy-hook
    source: stream/orders
    endpoint: https://127.1/hooks
    allow_private_cidrs: ["127.0.0.0/8"]
  - name: zoned-hook
    source: stream/orders
    endpoint: https://[fd00:ec2::254%251]/latest
    allow_private_cidrs: ["fd00::/8"]
  - name: credentials-hook
    source: stream/orders
    endpoint: https://ledger:hunter2@ledger.example.com/hooks?token=sekrit
  - name: pasted-hook
    source: stream/orders
    endpoint: https://ledger.example.com/hooks
    signing_secret: {SECRET_VALUE}
"""


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_the_shipped_registry_is_valid(environment: str, capsys: pytest.CaptureFixture[str]) -> None:
    # When the shipped registry is validated
    exit_code = main(["validate", "--registry", str(SHIPPED_REGISTRY), "--env", environment])

    # Then it passes, listing its six subscriptions
    out = capsys.readouterr().out
    assert exit_code == 0
    assert f"registry valid for {environment}: 7 subscriptions" in out
    assert "order-created-to-ledger" in out
    assert "refunds-to-psp" in out


def test_every_error_of_a_broken_registry_is_listed(
    copy_registry: RegistryCopier, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a team file with an unknown source, a batch size of 0 and a malformed name
    root = copy_registry({"teams/payments.yaml": BROKEN_TEAM})

    # When it is validated
    exit_code = main(["validate", "--registry", str(root)])

    # Then it fails with each problem on its own line, brackets and all, and no traceback
    err = capsys.readouterr().err
    assert exit_code == 1
    assert "the registry has 3 errors" in err
    assert "registry/teams/payments.yaml: subscription 'ledger-hook': batch_size: 0 is out of range" in err
    assert "subscription 'orphan-hook': source: 'stream/payments' is not declared in registry/sources.yaml" in err
    assert (
        "subscription 'Bad_Name': name: 'Bad_Name' has the wrong form; allowed: match ^[a-z0-9][a-z0-9-]{0,47}$" in err
    )
    assert "Traceback" not in err


def test_warnings_outside_dev_are_printed_but_pass(
    copy_registry: RegistryCopier, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a plain-http endpoint, allowed explicitly
    root = copy_registry({"teams/payments.yaml": PLAIN_HTTP_TEAM})

    # When it is validated for prod, then for dev
    prod_exit_code = main(["validate", "--registry", str(root), "--env", "prod"])
    prod = capsys.readouterr()
    dev_exit_code = main(["validate", "--registry", str(root), "--env", "dev"])
    dev = capsys.readouterr()

    # Then prod warns and still passes; dev says nothing
    assert (prod_exit_code, dev_exit_code) == (0, 0)
    assert "warning: registry/teams/payments.yaml: subscription 'ledger-hook': allow_http: is true in prod" in prod.err
    assert "1 warning" in prod.out
    assert dev.err == ""


def test_a_missing_registry_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--registry", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_endpoints_the_guard_would_refuse_fail_validation_in_every_environment_without_leaking_secrets(
    copy_registry: RegistryCopier, capsys: pytest.CaptureFixture[str], environment: str
) -> None:
    # Given endpoints in forms the SSRF guard refuses (private ranges allowed: the form alone is at fault),
    # one carrying credentials and a query token, and a signing secret pasted where its name belongs
    root = copy_registry({"teams/payments.yaml": HOSTILE_TEAM})

    # When it is validated for the environment
    exit_code = main(["validate", "--registry", str(root), "--env", environment])

    # Then it fails naming file, subscription and field for each, even in dev
    output = capsys.readouterr()
    err = " ".join(output.err.split())  # the terminal wraps long lines
    at = "registry/teams/payments.yaml: subscription"
    assert exit_code == 1
    assert "the registry has 5 errors" in err
    assert (
        f"{at} 'loopback-hook': endpoint: host '{fullwidth('127.0.0.1')}' is written with non-ASCII characters "
        "that normalise to the address 127.0.0.1" in err
    )
    assert f"{at} 'legacy-hook': endpoint: host '127.1' is an IPv4 address in a form other than" in err
    assert f"{at} 'zoned-hook': endpoint: host [fd00:ec2::254%251] carries an IPv6 zone id" in err
    assert f"{at} 'credentials-hook': endpoint: URL carries user info" in err
    assert f"{at} 'pasted-hook': signing_secret: looks like a secret value, not a secret's name: " in err
    # And none of the secrets is printed
    unwrapped = "".join((output.out + output.err).split())
    for secret in ("hunter2", "sekrit", SECRET_VALUE):
        assert secret not in unwrapped


BAD_SCHEDULE_TEAM = """\
team: payments
alerts_email: payments-oncall@example.com
subscriptions:
  - name: ledger-hook
    source: stream/orders
    endpoint: https://ledger.example.com/hooks
    retry_schedule_seconds: [300, 0, 604800]
"""


def test_a_bad_retry_schedule_is_reported_naming_the_field_and_each_wrong_wait(
    copy_registry: RegistryCopier, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a schedule with a wait of 0 s that also adds up to more than a week
    root = copy_registry({"teams/payments.yaml": BAD_SCHEDULE_TEAM})

    # When it is validated
    exit_code = main(["validate", "--registry", str(root)])

    # Then it fails naming the field and the position of the wrong wait, with what is allowed
    err = " ".join(capsys.readouterr().err.split())  # the terminal wraps long lines
    assert exit_code == 1
    assert (
        "registry/teams/payments.yaml: subscription 'ledger-hook': retry_schedule_seconds.1: 0 is out of range; "
        "allowed: at least 1" in err
    )
