"""Serializers and deserializers: turn keys and values into bytes and back.

A serializer is any callable `(topic, headers, data) -> bytes` (Kafka's
`Serializer.serialize(topic, headers, data)`); a deserializer is `(topic, headers, data: bytes)
-> T`. The producer passes a mutable list of headers, so a serializer may add one (a schema id,
say); the consumer passes the record's tuple.

`None` is never passed in or out (CLIENT_API.md §2 complaint 10): a null key or a tombstone value
bypasses the serializer and stays null, so `JsonSerde` never turns a tombstone into `b"null"`.
`serialize` / `deserialize` below apply that rule and wrap failures in `SerializationError`.

The built-in serdes (`BytesSerde`, `StringSerde`, `JsonSerde`) have a `serialize` and a
`deserialize` method, so one object serves both clients; `as_serializer` / `as_deserializer`
accept such an object, a three-argument callable, or a one-argument callable (kafka-python's
`value_serializer=lambda v: ...`), and are applied once, when a client is built.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, MutableSequence, Sequence
from typing import Any, Protocol, TypeVar, cast

from clients.errors import SerializationError

__all__ = [
    "BytesSerde",
    "Deserializer",
    "JsonSerde",
    "Serializer",
    "StringSerde",
    "as_deserializer",
    "as_serializer",
    "deserialize",
    "serialize",
]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
T_co = TypeVar("T_co", covariant=True)

Headers = MutableSequence[tuple[str, "bytes | None"]]
ReadHeaders = Sequence[tuple[str, "bytes | None"]]


class Serializer(Protocol[T_contra]):
    def __call__(self, topic: str, headers: Headers, data: T_contra, /) -> bytes: ...


class Deserializer(Protocol[T_co]):
    def __call__(self, topic: str, headers: ReadHeaders, data: bytes, /) -> T_co: ...


class BytesSerde:
    """bytes-like in, bytes out; anything else is a SerializationError."""

    def serialize(
        self, topic: str, headers: Headers, data: bytes | bytearray | memoryview
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        if isinstance(data, (bytearray, memoryview)):
            return bytes(data)
        raise SerializationError(
            f"topic {topic}: expected bytes, got {type(data).__name__}; "
            "pass a key_serializer/value_serializer"
        )

    def deserialize(self, topic: str, headers: ReadHeaders, data: bytes) -> bytes:
        return data


class StringSerde:
    """str <-> bytes in one encoding (UTF-8 by default)."""

    def __init__(self, encoding: str = "utf-8") -> None:
        self.encoding = encoding

    def serialize(self, topic: str, headers: Headers, data: str) -> bytes:
        if not isinstance(data, str):
            raise SerializationError(f"topic {topic}: expected str, got {type(data).__name__}")
        return data.encode(self.encoding)

    def deserialize(self, topic: str, headers: ReadHeaders, data: bytes) -> str:
        return data.decode(self.encoding)


class JsonSerde:
    """Any JSON value <-> compact UTF-8 JSON. `None` never reaches it (see the module doc)."""

    def __init__(self, *, sort_keys: bool = False) -> None:
        self.sort_keys = sort_keys

    def serialize(self, topic: str, headers: Headers, data: Any) -> bytes:
        return json.dumps(
            data, separators=(",", ":"), sort_keys=self.sort_keys, ensure_ascii=False
        ).encode("utf-8")

    def deserialize(self, topic: str, headers: ReadHeaders, data: bytes) -> Any:
        return json.loads(data)


def _arity(func: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume the full protocol
        return 3
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 3
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in positional and p.default is p.empty)


def as_serializer(obj: object | None) -> Serializer[Any]:
    """Adapt a user's serializer: None (bytes only), a serde object with `serialize`, a
    `(topic, headers, data)` callable or a one-argument `(data)` callable.

    Raises:
        TypeError: `obj` is none of these.
    """
    if obj is None:
        return BytesSerde().serialize
    method = getattr(obj, "serialize", None)
    if callable(method):
        return cast(Serializer[Any], method)
    if not callable(obj):
        raise TypeError(f"serializer {obj!r} is not callable")
    if _arity(obj) == 1:
        one = cast(Callable[[Any], bytes], obj)
        return lambda topic, headers, data: one(data)
    return cast(Serializer[Any], obj)


def as_deserializer(obj: object | None) -> Deserializer[Any]:
    """Adapt a user's deserializer, as `as_serializer` (None leaves bytes as they are).

    Raises:
        TypeError: `obj` is none of the accepted forms.
    """
    if obj is None:
        return BytesSerde().deserialize
    method = getattr(obj, "deserialize", None)
    if callable(method):
        return cast(Deserializer[Any], method)
    if not callable(obj):
        raise TypeError(f"deserializer {obj!r} is not callable")
    if _arity(obj) == 1:
        one = cast(Callable[[bytes], Any], obj)
        return lambda topic, headers, data: one(data)
    return cast(Deserializer[Any], obj)


def serialize(
    serializer: Serializer[T], topic: str, headers: Headers, data: T | None, *, is_key: bool
) -> bytes | None:
    """Apply `serializer` unless `data` is None; check the result is bytes.

    Raises:
        SerializationError: the serializer raised, or returned something other than bytes.
    """
    if data is None:
        return None
    what = "key" if is_key else "value"
    try:
        out = serializer(topic, headers, data)
    except SerializationError:
        raise
    except Exception as exc:  # a user's serializer: any failure is a serialization error
        raise SerializationError(f"topic {topic}: cannot serialize {what}: {exc!r}") from exc
    if isinstance(out, (bytearray, memoryview)):
        return bytes(out)
    if not isinstance(out, bytes):
        raise SerializationError(
            f"topic {topic}: {what} serializer returned {type(out).__name__}, not bytes"
        )
    return out


def deserialize(
    deserializer: Deserializer[T],
    topic: str,
    headers: ReadHeaders,
    data: bytes | None,
    *,
    is_key: bool,
) -> T | None:
    """Apply `deserializer` unless `data` is None.

    Raises:
        SerializationError: the deserializer raised.
    """
    if data is None:
        return None
    try:
        return deserializer(topic, headers, data)
    except SerializationError:
        raise
    except Exception as exc:  # a user's deserializer: any failure is a serialization error
        what = "key" if is_key else "value"
        raise SerializationError(f"topic {topic}: cannot deserialize {what}: {exc!r}") from exc
