"""Lambda event filtering (FilterCriteria): which records an event source mapping passes to the function.

A pattern is a JSON object whose leaves are lists of rules; a record matches when every key of the pattern
matches, and a mapping with several patterns passes a record that matches any of them. Supported rules: exact
values (strings, numbers, booleans, null), `prefix`, `suffix`, `equals-ignore-case`, `exists`,
`anything-but` (a value, a list of values or a prefix) and `numeric` (comparison pairs). A value that is a list
in the record matches when any of its elements does, as in Lambda.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

NUMERIC_COMPARISONS = {
    "=": lambda value, bound: value == bound,
    "<": lambda value, bound: value < bound,
    "<=": lambda value, bound: value <= bound,
    ">": lambda value, bound: value > bound,
    ">=": lambda value, bound: value >= bound,
}
_ABSENT = object()


class FilterPatternError(ValueError):
    """A filter pattern uses a shape or an operator this emulation does not support."""


def validate_patterns(patterns: Iterable[Mapping[str, Any]]) -> None:
    """Raise FilterPatternError for a pattern that could never be evaluated, so a mapping fails at start."""
    for pattern in patterns:
        _validate(pattern)


def matches_any(patterns: Sequence[Mapping[str, Any]], document: Mapping[str, Any]) -> bool:
    """Whether `document` passes FilterCriteria made of `patterns` (no patterns: everything passes)."""
    return not patterns or any(matches(pattern, document) for pattern in patterns)


def matches(pattern: Mapping[str, Any], document: Any) -> bool:
    for key, condition in pattern.items():
        value = document.get(key, _ABSENT) if isinstance(document, Mapping) else _ABSENT
        if isinstance(condition, Mapping):
            if not matches(condition, value):
                return False
        elif not any(_rule_matches(rule, value) for rule in condition):
            return False
    return True


def _rule_matches(rule: Any, value: Any) -> bool:
    if isinstance(rule, Mapping):
        ((operator, argument),) = rule.items()
        if operator == "exists":
            return (value is not _ABSENT) == bool(argument)
        if value is _ABSENT:
            return False
        if operator == "anything-but":
            return not _any_element(value, lambda element: _anything_but_excludes(argument, element))
        return _any_element(value, lambda element: _operator_matches(operator, argument, element))
    return value is not _ABSENT and _any_element(value, lambda element: _same_value(rule, element))


def _operator_matches(operator: str, argument: Any, value: Any) -> bool:
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(argument)
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.casefold() == str(argument).casefold()
    if operator == "numeric":
        if not _is_number(value):
            return False
        pairs = zip(argument[::2], argument[1::2], strict=True)
        return all(NUMERIC_COMPARISONS[comparison](value, bound) for comparison, bound in pairs)
    raise FilterPatternError(f"unsupported filter operator {operator!r}")


def _anything_but_excludes(argument: Any, value: Any) -> bool:
    if isinstance(argument, Mapping):
        return _operator_matches(*next(iter(argument.items())), value)
    excluded = argument if isinstance(argument, list) else [argument]
    return any(_same_value(candidate, value) for candidate in excluded)


def _any_element(value: Any, test: Callable[[Any], bool]) -> bool:
    return any(test(element) for element in value) if isinstance(value, list) else bool(test(value))


def _same_value(rule: Any, value: Any) -> bool:
    # JSON equality: 5 equals 5.0, but true is not 1 (Python's bool is an int).
    if isinstance(rule, bool) or isinstance(value, bool):
        return rule is value
    if _is_number(rule) and _is_number(value):
        return bool(rule == value)
    return type(rule) is type(value) and bool(rule == value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validate(pattern: Any, path: str = "") -> None:
    if not isinstance(pattern, Mapping) or not pattern:
        raise FilterPatternError(f"filter pattern{path or ''} must be a non-empty JSON object")
    for key, condition in pattern.items():
        where = f"{path}.{key}"
        if isinstance(condition, Mapping):
            _validate(condition, where)
        elif isinstance(condition, list) and condition:
            for rule in condition:
                _validate_rule(rule, where)
        else:
            raise FilterPatternError(f"filter pattern{where}: expected an object or a non-empty list of rules")


def _validate_rule(rule: Any, where: str) -> None:
    if not isinstance(rule, Mapping):
        if isinstance(rule, list | tuple):
            raise FilterPatternError(f"filter pattern{where}: a rule cannot be a list")
        return
    if len(rule) != 1:
        raise FilterPatternError(f"filter pattern{where}: an operator rule has exactly one key, got {sorted(rule)}")
    ((operator, argument),) = rule.items()
    if operator == "numeric":
        if not _is_numeric_argument(argument):
            raise FilterPatternError(f"filter pattern{where}: numeric needs [comparison, number, ...], got {argument}")
    elif operator == "anything-but":
        if isinstance(argument, Mapping):
            _validate_rule(argument, where)
    elif operator not in ("prefix", "suffix", "equals-ignore-case", "exists"):
        raise FilterPatternError(f"filter pattern{where}: unsupported operator {operator!r}")


def _is_numeric_argument(argument: Any) -> bool:
    """Whether `argument` is what the numeric operator takes: [comparison, number, ...], at least one pair."""
    return (
        isinstance(argument, list)
        and bool(argument)
        and len(argument) % 2 == 0
        and all(comparison in NUMERIC_COMPARISONS for comparison in argument[::2])
        and all(_is_number(bound) for bound in argument[1::2])
    )
