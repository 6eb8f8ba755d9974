"""`rafka` argument parsing: global client flags, bootstrap resolution, parsing helpers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cluster.cli import build_parser, main
from cluster.cli_common import (
    BOOTSTRAP_ENV,
    CliError,
    bootstrap_servers,
    client_config,
    parse_pairs,
)
from cluster.cli_group import parse_datetime, parse_scope, plan_offset
from cluster.cli_io import parse_line, start_offset


def test_global_flags_come_after_the_subcommand() -> None:
    args = build_parser().parse_args([
        "topic", "create", "a", "b", "-p", "3", "-r", "1", "-c", "retention.ms=5",
        "--bootstrap-server", "h:1", "-X", "request.timeout.ms=100", "--format", "json"])
    assert args.topics == ["a", "b"]
    assert (args.partitions, args.replication_factor, args.config) == (3, 1, ["retention.ms=5"])
    assert args.bootstrap_servers == "h:1"
    assert args.overrides == ["request.timeout.ms=100"]
    assert args.format == "json"
    assert callable(args.run)


@pytest.mark.parametrize("argv", [
    ["cluster", "info"], ["topic", "list"], ["topic", "describe", "t"], ["topic", "delete", "t"],
    ["topic", "alter-config", "t", "--set", "a=b"], ["topic", "add-partitions", "t", "-n", "1"],
    ["produce", "t"], ["consume", "t"], ["topic", "produce", "t"], ["topic", "consume", "t"],
    ["group", "list"], ["group", "describe", "g"], ["group", "delete", "g"],
    ["group", "reset-offsets", "g", "--all-topics", "--to-earliest"],
    ["quorum", "describe"], ["leader", "elect", "--all"],
    ["perf", "produce", "--topic", "t", "--num-records", "1"],
    ["perf", "consume", "--topic", "t", "--messages", "1"],
])
def test_every_client_command_takes_the_global_flags(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--bootstrap-servers", "h:1", "--format", "json"])
    assert args.bootstrap_servers == "h:1" and args.format == "json" and callable(args.run)


def test_cluster_launch_commands_still_parse() -> None:
    args = build_parser().parse_args(["cluster", "up", "-b", "1", "-c", "1", "--name", "x"])
    assert (args.action, args.brokers, args.controllers, args.name) == ("up", 1, 1, "x")
    assert getattr(args, "run", None) is None


def test_reset_offsets_needs_one_scope_and_one_spec() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["group", "reset-offsets", "g", "--to-earliest"])
    with pytest.raises(SystemExit):
        parser.parse_args(["group", "reset-offsets", "g", "--all-topics"])
    with pytest.raises(SystemExit):
        parser.parse_args(["group", "reset-offsets", "g", "--all-topics", "--to-earliest",
                           "--to-latest"])


def _ns(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"bootstrap_servers": None, "cluster": "rafka", "data_dir": None,
                               "overrides": []}
    base.update(kw)
    return argparse.Namespace(**base)


def test_bootstrap_from_flag_then_env_then_cluster_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    (tmp_path / "cluster.json").write_text(json.dumps({"bootstrap_servers": "file:9"}))
    assert bootstrap_servers(_ns(bootstrap_servers="flag:1", data_dir=str(tmp_path))) == "flag:1"
    assert bootstrap_servers(_ns(data_dir=str(tmp_path))) == "file:9"
    monkeypatch.setenv(BOOTSTRAP_ENV, "env:2")
    assert bootstrap_servers(_ns(data_dir=str(tmp_path))) == "env:2"


def test_default_cluster_file_is_under_dot_rafka(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CliError, match="rafka cluster up"):
        bootstrap_servers(_ns(cluster="dev"))
    (tmp_path / ".rafka" / "dev").mkdir(parents=True)
    (tmp_path / ".rafka" / "dev" / "cluster.json").write_text(
        json.dumps({"bootstrap_servers": "h:7"}))
    assert bootstrap_servers(_ns(cluster="dev")) == "h:7"


def test_client_config_merges_overrides() -> None:
    config = client_config(_ns(bootstrap_servers="h:1", overrides=["linger.ms=0", "acks=1"]),
                           {"acks": "all", "client.id": "x"})
    assert config == {"acks": "1", "client.id": "x", "linger.ms": "0",
                      "bootstrap.servers": "h:1"}


def test_parse_pairs() -> None:
    assert parse_pairs(["a=1", "b=x=y"], "-X") == {"a": "1", "b": "x=y"}
    assert parse_pairs(["k:v", "k2=v:2"], "-H", "=:") == {"k": "v", "k2": "v:2"}
    with pytest.raises(CliError):
        parse_pairs(["novalue"], "-X")
    with pytest.raises(CliError):
        parse_pairs(["=v"], "-X")


def test_produce_line_parsing() -> None:
    assert parse_line("k:v:w", ":", None) == (b"k", b"v:w")
    assert parse_line("value", None, None) == (None, b"value")
    assert parse_line("value", None, "fixed") == (b"fixed", b"value")
    with pytest.raises(CliError):
        parse_line("no separator", "\t", None)


def test_consume_start_offset() -> None:
    assert start_offset(None, False) == "latest"
    assert start_offset(None, True) == "earliest"
    assert start_offset("beginning", False) == "earliest"
    assert start_offset("end", True) == "latest"
    assert start_offset("42", False) == 42
    for bad in ("-1", "soon"):
        with pytest.raises(CliError):
            start_offset(bad, False)


def test_reset_scope_and_datetime() -> None:
    assert parse_scope(["t", "u:0,2"]) == [("t", None), ("u", [0, 2])]
    with pytest.raises(CliError):
        parse_scope(["t:x"])
    assert parse_datetime("1970-01-01T00:00:01") == 1000
    assert parse_datetime("1970-01-01T01:00:01+01:00") == 1000
    assert parse_datetime("1970-01-01T00:00:01Z") == 1000
    with pytest.raises(CliError):
        parse_datetime("yesterday")


def _spec(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"to_earliest": False, "to_latest": False, "to_current": False,
                               "to_offset": None, "shift_by": None, "to_datetime": None}
    base.update(kw)
    return argparse.Namespace(**base)


def test_reset_plan_clamps_to_the_log() -> None:
    # earliest 10, latest 50, committed 30
    assert plan_offset(_spec(to_earliest=True), 30, 10, 50, None) == 10
    assert plan_offset(_spec(to_latest=True), 30, 10, 50, None) == 50
    assert plan_offset(_spec(to_current=True), 30, 10, 50, None) == 30
    assert plan_offset(_spec(to_offset=5), 30, 10, 50, None) == 10
    assert plan_offset(_spec(to_offset=99), 30, 10, 50, None) == 50
    assert plan_offset(_spec(shift_by=-25), 30, 10, 50, None) == 10
    assert plan_offset(_spec(shift_by=7), 30, 10, 50, None) == 37
    assert plan_offset(_spec(shift_by=-1), None, 10, 50, None) == 49  # nothing committed: end
    assert plan_offset(_spec(to_datetime="x"), 30, 10, 50, 20) == 20
    assert plan_offset(_spec(to_datetime="x"), 30, 10, 50, -1) == 50  # no record that late


def test_missing_bootstrap_exits_1_with_a_message(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["topic", "list"]) == 1
    assert "no --bootstrap-servers given" in capsys.readouterr().err


def test_handler_errors_become_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import run_client_command
    from proto.errors import ErrorCode, RafkaError

    def failing(error: BaseException) -> argparse.Namespace:
        def run(args: argparse.Namespace, out: object) -> int:
            raise error
        return argparse.Namespace(format="text", run=run)

    assert run_client_command(failing(CliError("bad flag", code=2))) == 2
    assert "error: bad flag" in capsys.readouterr().err
    err = RafkaError.for_code(ErrorCode.GROUP_ID_NOT_FOUND, "group g does not exist")
    assert run_client_command(failing(err)) == 1
    assert "error: GROUP_ID_NOT_FOUND: group g does not exist" in capsys.readouterr().err
    assert run_client_command(failing(KeyboardInterrupt())) == 130
    assert run_client_command(argparse.Namespace(format="text", run=lambda a, o: 1)) == 1
