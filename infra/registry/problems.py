"""What the validator reports: one `Problem` per wrong field, naming file, item, field, reason and range."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from dispatcher.config import may_quote

_RANGE_ERROR_TYPES = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
_VALUE_ERROR_PREFIX = "Value error, "


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the registry.

    `item` names what the field belongs to ("subscription 'x'", "stream 'orders'"), empty for the file's
    own fields; `allowed` says what would be accepted, empty when the reason says it already.
    """

    file: str
    item: str
    field: str
    reason: str
    allowed: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: {self.item}: " if self.item else f"{self.file}: "
        allowed = f"; allowed: {self.allowed}" if self.allowed else ""
        return f"{where}{self.field}: {self.reason}{allowed}"


class RegistryError(ValueError):
    """The registry is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"the registry has {count} error{'s' if count != 1 else ''}:\n{lines}")


def allowed_range(model: type[BaseModel], field: str, *, of_items: bool = False) -> str:
    """The bounds a field declares, e.g. "1 to 1000" or "more than 0 and at most 100000", read from the model;
    `of_items`: the bounds of each item of a list field instead."""
    info = model.model_fields.get(field)
    if info is None:
        return ""
    return _bounds_wording(_item_metadata(info.annotation) if of_items else info.metadata)


def allowed_values(model: type[BaseModel], field: str) -> str:
    """Everything a field declares about its value: its bounds, or for a list its items' bounds and length."""
    info = model.model_fields.get(field)
    if info is None:
        return ""
    parts = [allowed_range(model, field)]
    item_bounds = allowed_range(model, field, of_items=True)
    if item_bounds:
        parts.append(f"each {item_bounds}")
    parts += [
        f"at most {constraint.max_length} items"
        for constraint in info.metadata
        if isinstance(constraint, annotated_types.MaxLen)
    ]
    return "; ".join(part for part in parts if part)


def _bounds_wording(metadata: Sequence[Any]) -> str:
    bounds: dict[str, Any] = {}
    for constraint in metadata:
        for bound in ("ge", "gt", "le", "lt"):
            if isinstance(constraint, annotated_types.BaseMetadata) and hasattr(constraint, bound):
                bounds[bound] = getattr(constraint, bound)
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']} to {bounds['le']}"
    wording = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    return " and ".join(f"{wording[bound]} {value}" for bound, value in bounds.items())


def _item_metadata(annotation: Any) -> list[Any]:
    """The constraints declared on the items of a `tuple[Annotated[item, Field(...)], ...]` field."""
    if get_origin(annotation) is not tuple:
        return []
    item = get_args(annotation)[0]
    if get_origin(item) is not Annotated:
        return []
    constraints: list[Any] = []
    for declared in get_args(item)[1:]:
        constraints += declared.metadata if isinstance(declared, FieldInfo) else [declared]
    return constraints


def problems_from_validation_error(
    error: ValidationError, model: type[BaseModel], file: str, item: str
) -> list[Problem]:
    """Turn pydantic's errors for one item into Problems with the field's allowed values."""
    return [
        _problem_from_error_details(details, model, file, item)
        for details in error.errors()
        # A default computed from other fields is skipped when one of them is wrong: already reported.
        if details["type"] != "default_factory_not_called"
    ]


def _problem_from_error_details(details: ErrorDetails, model: type[BaseModel], file: str, item: str) -> Problem:
    location = [str(part) for part in details["loc"]]
    field = ".".join(location)
    kind = details["type"]
    value = details.get("input")
    quotable = may_quote(details["loc"])  # never the value of a field that may hold a credential
    subject = f"{value!r} " if quotable else ""
    context: dict[str, Any] = dict(details.get("ctx") or {})
    top_field = location[0] if location else ""

    if kind == "missing":
        return Problem(file, item, field, "is required")
    if kind == "extra_forbidden":
        return Problem(file, item, field, "unknown field", ", ".join(model.model_fields))
    if kind in _RANGE_ERROR_TYPES:
        # A location below the field (retry_schedule_seconds.0) is one item of a list.
        allowed = allowed_range(model, top_field, of_items=len(location) > 1)
        return Problem(file, item, field, f"{subject}is out of range", allowed)
    if kind == "too_long":
        return Problem(
            file, item, field, f"has {context['actual_length']} items", f"at most {context['max_length']} items"
        )
    if kind in ("tuple_type", "list_type"):
        return Problem(file, item, field, f"{subject}is not a list")
    if kind == "string_pattern_mismatch":
        return Problem(file, item, field, f"{subject}has the wrong form", f"match {context['pattern']}")
    if kind == "literal_error":
        return Problem(file, item, field, f"{subject}is not an option", str(context["expected"]))
    message = details["msg"].removeprefix(_VALUE_ERROR_PREFIX)
    if not location:
        # A model-level check (e.g. http:// without allow_http) names its field as "field: reason".
        field, _, reason = message.partition(": ")
        return Problem(file, item, field, reason) if reason else Problem(file, item, "(item)", message)
    return Problem(file, item, field, f"{message} (got {value!r})" if quotable else message)
