"""`rafka produce TOPIC` (stdin lines → records) and `rafka consume TOPIC` (records → stdout).

Also reachable as `rafka topic produce|consume`. The text record format is Kafka's console
consumer with every print.* property on:
    CreateTime:<ts>\tPartition:<p>\tOffset:<o>\t<h1:v1,h2:v2 | NO_HEADERS>\t<key | null>\t<value>
`--format json` prints one JSON object per record (topic, partition, offset, timestamp,
timestamp_type, key, value, headers). Bytes are shown as UTF-8 (undecodable bytes escaped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from cluster.cli_common import CliError, client_config, parse_pairs
from cluster.cli_output import Output


def register(commands: Any, parent: argparse.ArgumentParser,
             topic_actions: Any | None = None) -> None:
    for where in (commands, topic_actions):
        if where is None:
            continue
        p = where.add_parser("produce", parents=[parent], help="produce stdin lines")
        _produce_args(p)
        p = where.add_parser("consume", parents=[parent], help="print records")
        _consume_args(p)


def _produce_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic")
    p.add_argument("--key-separator", default=None, metavar="SEP",
                   help="each line is KEY<SEP>VALUE (Kafka's parse.key + key.separator)")
    p.add_argument("-k", "--key", default=None, help="one key for every record")
    p.add_argument("-p", "--partition", type=int, default=None, help="explicit partition")
    p.add_argument("-H", "--header", action="append", default=[], metavar="KEY=VALUE",
                   help="header on every record (KEY:VALUE also accepted; repeatable)")
    p.add_argument("--acks", choices=("all", "-1", "0", "1"), default=None)
    p.add_argument("-z", "--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"),
                   default=None, help="compression.type")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-record output")
    p.set_defaults(run=produce)


def _consume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic")
    p.add_argument("-g", "--group", default=None, help="consume as a member of this group")
    p.add_argument("--from-beginning", action="store_true",
                   help="start at the log start when there is no committed offset")
    p.add_argument("-o", "--offset", default=None,
                   help="start offset: earliest, latest or a number (not with --group)")
    p.add_argument("-p", "--partition", type=int, action="append", default=None,
                   help="only this partition (repeatable; not with --group)")
    p.add_argument("-n", "--max-messages", type=int, default=None,
                   help="exit after this many records")
    p.add_argument("--timeout-ms", type=int, default=None,
                   help="exit when no record arrives for this long")
    p.add_argument("--value-only", action="store_true", help="print only the values")
    p.set_defaults(run=consume)


# ---------------------------------------------------------------------------- produce


def parse_line(line: str, key_separator: str | None, key: str | None
               ) -> tuple[bytes | None, bytes]:
    """(key, value) of one input line.

    Raises:
        CliError: a key separator is set but missing from the line.
    """
    if key_separator is None:
        return (None if key is None else key.encode()), line.encode()
    found, sep, value = line.partition(key_separator)
    if not sep:
        raise CliError(f"no key separator {key_separator!r} in line {line!r}")
    return found.encode(), value.encode()


def _lines(stream: TextIO) -> Iterable[str]:
    for line in stream:
        yield line[:-1] if line.endswith("\n") else line


def produce(args: argparse.Namespace, out: Output) -> int:
    from clients.producer.producer import Producer

    headers = [(k, v.encode()) for k, v in parse_pairs(args.header, "-H", "=:").items()]
    config = client_config(args)
    if args.acks is not None:
        config["acks"] = args.acks
    if args.compression is not None:
        config["compression.type"] = args.compression
    rows: list[dict[str, Any]] = []
    futures: list[tuple[int, Any]] = []
    with Producer(config) as producer:
        for number, line in enumerate(_lines(sys.stdin), 1):
            try:
                key, value = parse_line(line, args.key_separator, args.key)
                futures.append((number, producer.send(args.topic, value, key,
                                                      partition=args.partition,
                                                      headers=headers or None)))
            except Exception as exc:  # noqa: BLE001 - a bad line fails alone
                rows.append({"line": number, "partition": None, "offset": None,
                             "error": str(exc)})
        producer.flush()
        for number, future in futures:
            try:
                md = future.result()
                rows.append({"line": number, "partition": md.partition, "offset": md.offset,
                             "error": None})
            except Exception as exc:  # noqa: BLE001 - reported per record
                rows.append({"line": number, "partition": None, "offset": None,
                             "error": f"{type(exc).__name__}: {exc}"})
    rows.sort(key=lambda r: r["line"])
    failed = [r for r in rows if r["error"]]
    if out.json:
        out.value("records", rows)
    else:
        for r in rows:
            if r["error"]:
                print(f"line {r['line']}: failed: {r['error']}", file=sys.stderr)
            elif not args.quiet:
                out.line(f"Produced to partition {r['partition']} at offset {r['offset']}.")
    return 1 if failed else 0


# ---------------------------------------------------------------------------- consume


def text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "backslashreplace")


def format_record(record: Any, *, fmt: str = "text", value_only: bool = False) -> str:
    """One record as a line (see the module docstring)."""
    if fmt == "json":
        return json.dumps({
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "timestamp": record.timestamp, "timestamp_type": record.timestamp_type.name,
            "key": text(record.key), "value": text(record.value),
            "headers": [[k, text(v)] for k, v in record.headers],
        })
    value = text(record.value) or "null"
    if value_only:
        return value
    kind = "LogAppendTime" if record.timestamp_type.name == "LOG_APPEND_TIME" else "CreateTime"
    headers = (",".join(f"{k}:{text(v) or 'null'}" for k, v in record.headers)
               or "NO_HEADERS")
    key = text(record.key)
    return (f"{kind}:{record.timestamp}\tPartition:{record.partition}\tOffset:{record.offset}"
            f"\t{headers}\t{'null' if key is None else key}\t{value}")


def start_offset(spec: str | None, from_beginning: bool) -> str | int:
    """"earliest", "latest" or an offset number.

    Raises:
        CliError: not one of those.
    """
    if spec is None:
        return "earliest" if from_beginning else "latest"
    if spec in ("earliest", "beginning", "start"):
        return "earliest"
    if spec in ("latest", "end"):
        return "latest"
    try:
        offset = int(spec)
    except ValueError:
        raise CliError(f"--offset {spec!r}: use earliest, latest or a number") from None
    if offset < 0:
        raise CliError(f"--offset {spec!r} must not be negative")
    return offset


def consume(args: argparse.Namespace, out: Output) -> int:
    from clients.consumer.consumer import Consumer
    from clients.types import TopicPartition

    if args.group and (args.partition or args.offset is not None):
        raise CliError("--partition/--offset cannot be used with --group "
                       "(the group assigns partitions and stores positions)")
    start = start_offset(args.offset, args.from_beginning)
    base: dict[str, Any] = {"auto.offset.reset": "earliest" if start == "earliest"
                            else "latest"}
    if args.group:
        base["group.id"] = args.group
    config = client_config(args, base)
    consumer: Consumer[bytes, bytes] = Consumer(config)
    count = 0
    try:
        if args.group:
            consumer.subscribe([args.topic])
            _wait_for_assignment(consumer)
        else:
            parts = args.partition or sorted(consumer.partitions_for_topic(args.topic) or ())
            if not parts:
                raise CliError(f"topic {args.topic} does not exist")
            tps = [TopicPartition(args.topic, p) for p in parts]
            consumer.assign(tps)
            for tp in tps:
                if isinstance(start, int):
                    consumer.seek(tp, start)
                elif start == "earliest":
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek_to_end(tp)
        fmt = "json" if out.json else "text"
        last = time.monotonic()
        while args.max_messages is None or count < args.max_messages:
            left = None if args.max_messages is None else args.max_messages - count
            batch = consumer.poll(0.5, max_records=left)
            for record in batch:
                print(format_record(record, fmt=fmt, value_only=args.value_only), flush=False)
                count += 1
            sys.stdout.flush()
            now = time.monotonic()
            if batch.count():
                last = now
            elif args.timeout_ms is not None and (now - last) * 1000 >= args.timeout_ms:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    print(f"Processed a total of {count} messages", file=sys.stderr)
    return 0


def _wait_for_assignment(consumer: Any, timeout_s: float = 30.0) -> None:
    """Join before the idle timer starts (the first join waits out the coordinator's
    group.initial.rebalance.delay.ms); a slow join is not fatal, polling goes on."""
    from clients.errors import KafkaTimeoutError

    try:
        consumer.wait_for_assignment(timeout_s)
    except KafkaTimeoutError:
        print(f"warning: no assignment within {timeout_s:.0f} s", file=sys.stderr)
