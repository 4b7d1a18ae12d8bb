"""The subscription registry: the files service teams write, their models, validation and schemas."""

from infra.registry.loader import LoadedRegistry, Registry, Team, load_registry
from infra.registry.model import Queue, RegisteredSubscription, SourcesFile, Stream, TeamFile
from infra.registry.problems import Problem, RegistryError

__all__ = [
    "LoadedRegistry",
    "Problem",
    "Queue",
    "RegisteredSubscription",
    "Registry",
    "RegistryError",
    "SourcesFile",
    "Stream",
    "Team",
    "TeamFile",
    "load_registry",
]
