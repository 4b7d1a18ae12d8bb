"""Our commands on a machine with no AWS configuration: a loopback endpoint (the local runtime's) gets the local
region and throwaway credentials; every other endpoint keeps boto3's standard chain, and the shell's own
settings win."""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import NoCredentialsError
from hypothesis import given
from hypothesis import strategies as st

from cli.main import main
from local.aws import LOCAL_CREDENTIALS, LOCAL_REGION, EmbeddedAws, client_for_endpoint, is_loopback_url
from tests.producer.conftest import queue_messages, stream_records

THROWAWAY_KEY = LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"]
REMOTE_ENDPOINT = "https://kinesis.example.test"  # never contacted: requests are stopped before they are sent
SHELL_KEY = "AKIASHELLSHELLSHELL0"
PROFILE_KEY = "AKIAPROFILEPROFILE00"
DEFAULT_PROFILE_KEY = "AKIADEFAULTDEFAULT00"
REGION_OF_USER = "eu-west-1"


@pytest.fixture
def bare_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS_* variable, and HOME and the AWS files in an empty directory; returns that directory."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    return home


@pytest.fixture(scope="module")
def embedded_aws() -> Iterator[EmbeddedAws]:
    """The local runtime's AWS (moto server on 127.0.0.1), as `dispatcher local` runs it."""
    aws = EmbeddedAws(port=0)
    aws.start()
    yield aws
    aws.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- the commands -------------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_send_to_the_local_runtime_needs_no_aws_configuration(
    bare_machine: Path, embedded_aws: EmbeddedAws, host: str
) -> None:
    # Given a machine without any AWS configuration, and a stream on the local runtime
    stream = unique("orders")
    embedded_aws.client("kinesis").create_stream(StreamName=stream, ShardCount=1)
    endpoint = f"http://{host}:{embedded_aws.port}"

    # When an event is sent as the README shows
    exit_code = main(["send", "--endpoint-url", endpoint, "--stream", stream, "--partition-key", "k", '{"id":"e-1"}'])

    # Then it is on the local runtime's stream
    assert exit_code == 0
    assert stream_records(embedded_aws.client("kinesis"), stream) == [("k", b'{"id":"e-1"}')]


@pytest.mark.integration
def test_an_exported_loopback_endpoint_is_enough(
    bare_machine: Path, embedded_aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given only AWS_ENDPOINT_URL, pointing at the local runtime, and a queue there
    queue = unique("billing")
    embedded_aws.client("sqs").create_queue(QueueName=queue)
    monkeypatch.setenv("AWS_ENDPOINT_URL", embedded_aws.endpoint_url)

    # When an event is sent without --endpoint-url
    exit_code = main(["send", "--queue", queue, '{"id":"e-2"}'])

    # Then it is in the local runtime's queue
    assert exit_code == 0
    assert [message["Body"] for message in queue_messages(embedded_aws.client("sqs"), queue)] == ['{"id":"e-2"}']


@pytest.mark.integration
def test_redrive_of_a_deployed_function_on_a_loopback_endpoint_reaches_it(
    bare_machine: Path, embedded_aws: EmbeddedAws, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a machine without any AWS configuration and a loopback AWS without the function
    # When a deployed-environment redrive is pointed at it
    exit_code = main(["redrive", "orders-to-warehouse", "--endpoint-url", embedded_aws.endpoint_url])

    # Then the request reached it (the function is missing there), rather than failing for region or credentials
    error = capsys.readouterr().err
    assert exit_code == 2  # the subscription is not deployed there: exit 2, as `dispatcher redrive --help` says
    assert "function dev-orders-to-warehouse" in error
    assert "region" not in error
    assert "credentials" not in error


def test_real_aws_without_a_region_says_how_to_set_one(bare_machine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given no region anywhere, and no endpoint override
    # When an event is sent
    exit_code = main(["send", "--queue", "dev-billing-callbacks", '{"id":"e-3"}'])

    # Then the command names what is missing and both ways out
    error = " ".join(capsys.readouterr().err.split())
    assert exit_code == 1
    assert "no region" in error
    assert "AWS_DEFAULT_REGION" in error
    assert "--endpoint-url" in error


# -- which credentials and region a client signs with --------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    url: str
    access_key: str
    region: str


class StoppedBeforeSendingError(Exception):
    """Raised from botocore's before-send hook: the request was signed, and never leaves the process."""

    def __init__(self, request: Any) -> None:
        super().__init__(request.url)
        self.request = request


def signature_of_a_request(endpoint_url: str | None) -> Signature:
    """Where a Kinesis client for `endpoint_url` sends its requests, and which key and region sign them."""
    client = client_for_endpoint("kinesis", endpoint_url)

    def stop(request: Any, **_: Any) -> None:
        raise StoppedBeforeSendingError(request)

    client.meta.events.register("before-send", stop)
    with pytest.raises(StoppedBeforeSendingError) as stopped:
        client.list_streams()
    authorization = stopped.value.request.headers["Authorization"].decode()
    # AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, SignedHeaders=..., Signature=...
    key, _, region, *_ = authorization.split("Credential=")[1].split(",")[0].split("/")
    return Signature(stopped.value.request.url, key, region)


def write_aws_files(home: Path, config: str, credentials: str) -> None:
    (home / ".aws").mkdir(exist_ok=True)
    (home / ".aws" / "config").write_text(config, encoding="utf-8")
    (home / ".aws" / "credentials").write_text(credentials, encoding="utf-8")


def test_a_loopback_endpoint_gets_the_local_region_and_throwaway_credentials(bare_machine: Path) -> None:
    signature = signature_of_a_request("http://127.0.0.1:4566")

    assert signature == Signature("http://127.0.0.1:4566/", THROWAWAY_KEY, LOCAL_REGION)


def test_the_shells_credentials_and_region_win_on_a_loopback_endpoint(
    bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given keys and AWS_REGION (the aws CLI's variable, which boto3 alone ignores) set in the shell
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SHELL_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shell-secret")
    monkeypatch.setenv("AWS_REGION", REGION_OF_USER)

    signature = signature_of_a_request("http://[::1]:4566")

    assert (signature.access_key, signature.region) == (SHELL_KEY, REGION_OF_USER)


def test_a_named_profile_wins_on_a_loopback_endpoint(bare_machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given AWS_PROFILE naming a profile with its own keys and region
    write_aws_files(
        bare_machine,
        config=f"[profile team]\nregion = {REGION_OF_USER}\n",
        credentials=f"[team]\naws_access_key_id = {PROFILE_KEY}\naws_secret_access_key = profile-secret\n",
    )
    monkeypatch.setenv("AWS_PROFILE", "team")

    signature = signature_of_a_request("http://localhost:4566")

    assert (signature.access_key, signature.region) == (PROFILE_KEY, REGION_OF_USER)


def test_the_default_profile_is_for_real_aws_only(bare_machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a default profile with real keys and a region other than the local runtime's, and no AWS_PROFILE
    write_aws_files(
        bare_machine,
        config=f"[default]\nregion = {REGION_OF_USER}\n",
        credentials=f"[default]\naws_access_key_id = {DEFAULT_PROFILE_KEY}\naws_secret_access_key = real-secret\n",
    )

    # Then a loopback endpoint gets the local runtime's (its streams live in LOCAL_REGION), and real AWS the profile
    local = signature_of_a_request("http://127.0.0.1:4566")
    remote = signature_of_a_request(REMOTE_ENDPOINT)

    assert (local.access_key, local.region) == (THROWAWAY_KEY, LOCAL_REGION)
    assert (remote.access_key, remote.region) == (DEFAULT_PROFILE_KEY, REGION_OF_USER)


@pytest.mark.parametrize(
    "endpoint",
    [
        REMOTE_ENDPOINT,
        "http://10.0.0.1:4566",
        "http://localhost.example.test:4566",
        "http://127.0.0.1.example.test:4566",
        "http://127.0.0.1@example.test:4566",
    ],
)
def test_an_endpoint_elsewhere_never_gets_the_throwaway_credentials(
    bare_machine: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    # Given a region but no credentials, and instance metadata off (nothing may leave loopback in tests)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION_OF_USER)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    # Then the standard chain runs and finds nothing, as boto3 alone would
    with pytest.raises(NoCredentialsError):
        signature_of_a_request(endpoint)


def test_the_decision_is_made_on_the_endpoint_botocore_resolves(
    bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a loopback AWS_ENDPOINT_URL, but a service-specific endpoint elsewhere, which botocore prefers
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", REMOTE_ENDPOINT)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION_OF_USER)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    # Then the client goes where botocore says, with the standard chain only
    with pytest.raises(NoCredentialsError):
        signature_of_a_request(None)


def test_real_aws_keeps_the_shells_credentials(bare_machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SHELL_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shell-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION_OF_USER)

    signature = signature_of_a_request(None)

    assert signature == Signature(f"https://kinesis.{REGION_OF_USER}.amazonaws.com/", SHELL_KEY, REGION_OF_USER)


# -- what counts as loopback ----------------------------------------------------------------------------------------


@given(st.ip_addresses())
def test_an_address_is_loopback_exactly_when_ip_says_so(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    host = f"[{address}]" if address.version == 6 else str(address)

    assert is_loopback_url(f"http://{host}:4566") == address.is_loopback


URL_PIECES = st.sampled_from(["http://", "[", "]", ":", "@", "/", ".", "%", "127", "0", "1", "::1", "localhost"])
URL_LIKE_TEXT = st.lists(URL_PIECES | st.text(max_size=3), max_size=12).map("".join)


@pytest.mark.adversarial
@given(st.text() | URL_LIKE_TEXT)
def test_any_text_is_judged_without_an_error(text: str) -> None:
    # Malformed URLs ("http://[::1", "http://[zz]") make urlsplit raise: they are simply not loopback
    assert isinstance(is_loopback_url(text), bool)
