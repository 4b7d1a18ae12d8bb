"""Read registry/sources.yaml and registry/teams/*.yaml, validate everything, report every problem at once.

Each stream, queue and subscription is validated on its own, so one bad entry neither hides the problems
of its neighbours nor keeps the cross-file checks (duplicate names, unknown sources) from running.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from infra.registry import limits, rules
from infra.registry.model import Queue, RegisteredSubscription, SourcesFile, Stream, TeamFile
from infra.registry.problems import Problem, RegistryError, problems_from_validation_error
from infra.registry.rules import Registration

SOURCES_FILE_NAME = "sources.yaml"
TEAMS_DIRECTORY_NAME = "teams"
TEAM_FILE_GLOB = "*.yaml"

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Team:
    file: str
    definition: TeamFile


@dataclass(frozen=True, slots=True)
class Registry:
    """A validated registry: what the CDK app deploys."""

    sources: SourcesFile
    teams: tuple[Team, ...]

    def registrations(self) -> Iterator[tuple[Team, RegisteredSubscription]]:
        for team in self.teams:
            for subscription in team.definition.subscriptions:
                yield team, subscription

    def subscriptions_of(self, source: str) -> list[RegisteredSubscription]:
        """The subscriptions reading `stream/<name>` or `queue/<name>`."""
        return [subscription for _, subscription in self.registrations() if subscription.source == source]


@dataclass(frozen=True, slots=True)
class LoadedRegistry:
    registry: Registry
    warnings: tuple[Problem, ...]


def load_registry(root: Path, environment: limits.Environment) -> LoadedRegistry:
    """Validate the registry under `root`; raises RegistryError listing every error found."""
    problems: list[Problem] = []
    sources_path = root / SOURCES_FILE_NAME
    sources_file = _display_path(root, sources_path)
    sources, invalid_sources = _load_sources(sources_path, sources_file, problems)
    problems.extend(rules.check_sources(sources, sources_file))

    teams: list[Team] = []
    registrations: list[Registration] = []
    team_paths = sorted((root / TEAMS_DIRECTORY_NAME).glob(TEAM_FILE_GLOB))
    if not team_paths:
        problems.append(Problem(_display_path(root, root / TEAMS_DIRECTORY_NAME), "", "files", "no team file found"))
    for path in team_paths:
        file = _display_path(root, path)
        header, subscriptions = _load_team(path, file, problems)
        registrations.extend(Registration(file, subscription) for subscription in subscriptions)
        if header is not None:
            problems.extend(rules.check_team_file(header, file, path.stem))
            teams.append(Team(file, header.model_copy(update={"subscriptions": subscriptions})))
    problems.extend(rules.check_registrations(registrations, sources, sources_file, invalid_sources))

    if problems:
        raise RegistryError(problems)
    warnings = tuple(rules.environment_warnings(registrations, environment))
    return LoadedRegistry(Registry(sources, tuple(teams)), warnings)


def _display_path(root: Path, path: Path) -> str:
    """Paths as a reviewer sees them in the repository: registry/teams/payments.yaml."""
    return (Path(root.name) / path.relative_to(root)).as_posix()


def _read_mapping(path: Path, file: str, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(Problem(file, "", "file", "does not exist"))
        return None
    except yaml.YAMLError as error:
        problems.append(Problem(file, "", "file", f"is not valid YAML: {_yaml_problem(error)}"))
        return None
    if not isinstance(content, dict):
        problems.append(Problem(file, "", "file", "must be a YAML mapping at the top level"))
        return None
    return content


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong and where, without the snippet of the file PyYAML quotes (it may hold an endpoint's
    credentials or a pasted secret)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem or error.context} at line {mark.line + 1}, column {mark.column + 1}"
    return type(error).__name__


def _validate(model: type[ModelT], raw: Any, file: str, item: str, problems: list[Problem]) -> ModelT | None:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems.extend(problems_from_validation_error(error, model, file, item))
        return None


def _validate_items(
    model: type[ModelT], raw: dict[str, Any], key: str, kind: str, file: str, problems: list[Problem]
) -> list[ModelT]:
    """Validate each entry of the list under `key` on its own; entries are named by their `name`."""
    entries = raw.get(key) or []
    if not isinstance(entries, list):
        problems.append(Problem(file, "", key, "must be a list"))
        return []
    valid = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        item = f"{kind} {name!r}" if isinstance(name, str) else f"{key}[{index}]"
        validated = _validate(model, entry, file, item, problems)
        if validated is not None:
            valid.append(validated)
    return valid


def _load_sources(path: Path, file: str, problems: list[Problem]) -> tuple[SourcesFile, frozenset[str]]:
    """The valid sources, and references ("stream/x") to those declared but invalid (already reported)."""
    raw = _read_mapping(path, file, problems)
    if raw is None:
        return SourcesFile(), frozenset()
    # The file's own keys first (unknown ones are reported), then each entry on its own.
    _validate(SourcesFile, {**raw, "streams": [], "queues": []}, file, "", problems)
    streams = _validate_items(Stream, raw, "streams", "stream", file, problems)
    queues = _validate_items(Queue, raw, "queues", "queue", file, problems)
    sources = SourcesFile(streams=tuple(streams), queues=tuple(queues))
    declared = {f"{kind}/{name}" for kind, name in _declared_names(raw)}
    valid = {f"stream/{stream.name}" for stream in streams} | {f"queue/{queue.name}" for queue in queues}
    return sources, frozenset(declared - valid)


def _declared_names(raw: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key, kind in (("streams", "stream"), ("queues", "queue")):
        entries = raw.get(key)
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                yield kind, entry["name"]


def _load_team(
    path: Path, file: str, problems: list[Problem]
) -> tuple[TeamFile | None, tuple[RegisteredSubscription, ...]]:
    """The team's own fields (None when invalid) and its valid subscriptions."""
    raw = _read_mapping(path, file, problems)
    if raw is None:
        return None, ()
    header = _validate(TeamFile, {**raw, "subscriptions": []}, file, "", problems)
    subscriptions = _validate_items(RegisteredSubscription, raw, "subscriptions", "subscription", file, problems)
    return header, tuple(subscriptions)
