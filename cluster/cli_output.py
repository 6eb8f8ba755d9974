"""`rafka` output: aligned tables with Kafka's column names, or the same fields as JSON.

A command builds rows as dicts with snake_case keys and a column list mapping each upper-case
header (CURRENT-OFFSET, LOG-END-OFFSET, ...) to a key. Text mode prints the aligned table
(None as "-"); JSON mode prints the dicts, so scripts get the same fields in snake_case.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

Column = tuple[str, str]  # (HEADER, row key)


def cell(value: Any) -> str:
    """One table cell: None → "-", sequences joined with ",", bools lower-case."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) if value else "-"
    return str(value)


def snake(header: str) -> str:
    """A header or Kafka field name as a JSON key: TOTAL-LAG → total_lag,
    LeaderEpoch → leader_epoch."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", header)
    return spaced.replace("-", "_").lower()


def format_table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> str:
    """Left-aligned columns two spaces apart, headers first; no trailing spaces."""
    grid = [[header for header, _ in columns]]
    grid += [[cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip()
             for line in grid]
    return "\n".join(lines)


def format_pairs(pairs: Sequence[tuple[str, Any]]) -> str:
    """`Key:  value` lines, keys padded (kafka-metadata-quorum --status style)."""
    width = max((len(k) for k, _ in pairs), default=0) + 1
    return "\n".join(f"{(k + ':').ljust(width)}  {cell(v)}" for k, v in pairs)


def jsonable(value: Any) -> Any:
    """Dataclasses, tuples, bytes, exceptions → plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, BaseException):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


@dataclass
class Output:
    """Where a command writes: `fmt` is "text" or "json"; JSON output is collected into one
    document (`sections`) and written by `flush`, so a command emits exactly one JSON value."""

    fmt: str = "text"
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    sections: dict[str, Any] = field(default_factory=dict)

    @property
    def json(self) -> bool:
        return self.fmt == "json"

    def table(self, name: str, columns: Sequence[Column],
              rows: Sequence[Mapping[str, Any]], *, title: str | None = None) -> None:
        if self.json:
            self.sections[name] = jsonable([dict(r) for r in rows])
            return
        if title:
            print(title, file=self.stream)
        print(format_table(columns, rows), file=self.stream)

    def pairs(self, name: str, pairs: Sequence[tuple[str, Any]], *,
              json_value: Any = None) -> None:
        if self.json:
            self.sections[name] = jsonable(json_value if json_value is not None
                                           else {snake(k): v for k, v in pairs})
            return
        print(format_pairs(pairs), file=self.stream)

    def line(self, text: str = "") -> None:
        """Free text: printed in text mode, dropped in JSON mode."""
        if not self.json:
            print(text, file=self.stream)

    def value(self, name: str, value: Any) -> None:
        """A JSON-only section (text mode shows it some other way)."""
        if self.json:
            self.sections[name] = jsonable(value)

    def flush(self) -> None:
        if self.json and self.sections:
            doc = (next(iter(self.sections.values())) if len(self.sections) == 1
                   else self.sections)
            json.dump(doc, self.stream, indent=2, sort_keys=False)
            self.stream.write("\n")
            self.sections = {}
        self.stream.flush()
