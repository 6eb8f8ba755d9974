"""Kafka-style configuration tables: name, type, default, validator and doc (Kafka's ConfigDef).

One table per component (topic, broker, controller, producer, consumer, admin). A table resolves
user input given as a dict of Kafka's dotted names (`{"linger.ms": 5}`) and/or snake_case
keyword arguments (`linger_ms=5`), converts strings the way Kafka's parser does, checks each value,
and yields a plain `dict[str, object]` keyed by dotted name; components then build their own frozen
dataclass from it. An unknown key raises `ConfigError` naming the closest valid key.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from proto.errors import ErrorCode, RafkaError


class ConfigError(RafkaError, ValueError):
    """A configuration key is unknown, given twice, or has an invalid value."""

    code = ErrorCode.INVALID_CONFIG


class ConfigType(Enum):
    BOOLEAN = "boolean"
    INT = "int"
    LONG = "long"
    DOUBLE = "double"
    STRING = "string"
    LIST = "list"


Validator = Callable[[str, Any], None]


@dataclass(frozen=True, slots=True)
class ConfigKey:
    name: str  # Kafka's dotted name
    type: ConfigType
    default: Any
    validator: Validator | None = None
    doc: str = ""


def at_least(minimum: float) -> Validator:
    def check(name: str, value: Any) -> None:
        if value is not None and value < minimum:
            raise ConfigError(f"{name}={value}: must be at least {minimum}")

    return check


def between(low: float, high: float) -> Validator:
    def check(name: str, value: Any) -> None:
        if value is not None and not low <= value <= high:
            raise ConfigError(f"{name}={value}: must be between {low} and {high}")

    return check


def one_of(*choices: Any) -> Validator:
    def check(name: str, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item not in choices:
                allowed = ", ".join(str(c) for c in choices)
                raise ConfigError(f"{name}={item!r}: must be one of {allowed}")

    return check


def _parse(key: ConfigKey, value: Any) -> Any:
    """Convert `value` to the key's type, accepting Kafka's string forms ("true", "5")."""
    if value is None:
        return None
    kind = key.type
    try:
        if kind is ConfigType.BOOLEAN:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise ValueError
        if kind in (ConfigType.INT, ConfigType.LONG):
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            number = int(value.strip()) if isinstance(value, str) else int(value)
            limit = 2**31 if kind is ConfigType.INT else 2**63
            if not -limit <= number < limit:
                raise ValueError
            return number
        if kind is ConfigType.DOUBLE:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is ConfigType.LIST:
            if isinstance(value, str):
                return [item.strip() for item in value.split(",") if item.strip()]
            return [str(item) for item in value]
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key.name}={value!r}: expected a value of type {kind.value}"
        ) from None


class ConfigDef:
    """A table of configuration keys for one component."""

    def __init__(self, keys: Iterable[ConfigKey]) -> None:
        self._keys: dict[str, ConfigKey] = {}
        for key in keys:
            assert key.name not in self._keys, f"duplicate config key {key.name}"
            self._keys[key.name] = key

    @property
    def names(self) -> list[str]:
        return sorted(self._keys)

    def __contains__(self, name: object) -> bool:
        return name in self._keys

    def key(self, name: str) -> ConfigKey:
        try:
            return self._keys[name]
        except KeyError:
            raise self._unknown(name) from None

    def defaults(self) -> dict[str, Any]:
        return {name: key.default for name, key in self._keys.items()}

    def parse_value(self, name: str, value: Any) -> Any:
        """Parse and validate one value (dotted name)."""
        key = self.key(name)
        parsed = _parse(key, value)
        if key.validator is not None:
            key.validator(name, parsed)
        return parsed

    def resolve(
        self,
        config: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        include_defaults: bool = True,
    ) -> dict[str, Any]:
        """Merge a dotted-name dict and snake_case overrides into validated values.

        Args:
            config: Kafka's dotted names (`{"linger.ms": 5}`).
            overrides: snake_case keyword arguments (`linger_ms=5`); they win over `config`.
            include_defaults: fill every key not given with its default.

        Raises:
            ConfigError: an unknown key (naming the closest valid one), the same key spelled
                both ways in one call, or a value of the wrong type or range.
        """
        given: dict[str, Any] = {}
        for name, value in (config or {}).items():
            self.key(name)
            given[name] = value
        spelled_with_underscores: set[str] = set()
        for kwarg, value in (overrides or {}).items():
            name = self._from_kwarg(kwarg)
            if name in spelled_with_underscores:
                raise ConfigError(f"{kwarg}: {name} given twice")
            if config and name in config:
                raise ConfigError(f"{name} given both as {name!r} and as {kwarg}=")
            spelled_with_underscores.add(name)
            given[name] = value
        resolved = self.defaults() if include_defaults else {}
        for name, value in given.items():
            resolved[name] = self.parse_value(name, value)
        return resolved

    def _from_kwarg(self, kwarg: str) -> str:
        if kwarg in self._keys:
            return kwarg
        dotted = kwarg.replace("_", ".")
        if dotted in self._keys:
            return dotted
        # Kafka names that contain underscores are rare; match them by normalising both sides.
        for name in self._keys:
            if name.replace(".", "_") == kwarg:
                return name
        raise self._unknown(kwarg)

    def _unknown(self, name: str) -> ConfigError:
        candidates = list(self._keys) + [n.replace(".", "_") for n in self._keys]
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ConfigError(f"unknown configuration {name!r}{hint}")
