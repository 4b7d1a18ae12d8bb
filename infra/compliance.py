"""cdk-nag wiring: the AwsSolutions pack on the whole app, and acknowledgments that must give a reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def add_compliance_checks(app: App) -> None:
    """Synthesis fails on any AwsSolutions finding that is not acknowledged with a reason."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one cdk-nag finding on `scope` and everything under it; `reason` is what a reviewer reads."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
