"""The import rules of DESIGN.md and STYLE.md §2, enforced by parsing every module with `ast`.

- `proto` imports no other Rafka package.
- `clients` imports `proto` only.
- `cluster` imports `proto`, and `clients` only in `*_transport.py` (a broker acting as a client);
  never `controller`.
- `controller` imports `proto` only.
- Composition roots (`cluster/launcher.py`, `cluster/cli.py`) and `chaos/` may import everything.
- Protocol cores (every module that is not a shell) import neither `ray` nor `grpc` nor `asyncio`,
  nor the wall clock, threads or sockets: those belong to shells (`*_actor.py`, `*_servicer.py`,
  `*_transport.py`, `*_runtime.py`) and the public client façades.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proto", "clients", "cluster", "controller", "chaos")
SHELL_SUFFIXES = ("_actor.py", "_servicer.py", "_transport.py", "_runtime.py")
COMPOSITION_ROOTS = {
    "cluster/launcher.py", "cluster/cli.py", "cluster/demo.py", "cluster/demo_cluster.py",
    "cluster/cli_common.py", "cluster/cli_output.py", "cluster/cli_topic.py",
    "cluster/cli_io.py", "cluster/cli_group.py", "cluster/cli_cluster.py", "cluster/cli_perf.py",
}
# Public client façades run the async engine (sync clients on a client-owned thread).
CLIENT_FACADES = {
    "clients/producer/producer.py",
    "clients/consumer/consumer.py",
    "clients/admin.py",
    "clients/aio.py",
    "clients/consumer_actor.py",
}
SHELL_ONLY_MODULES = {"ray", "grpc", "asyncio", "threading", "socket", "time"}
# The process-wide metrics registry is written by a client's I/O thread and read by user and
# exporter threads: it holds a lock, and nothing else from the shell-only list.
LOCK_ONLY_MODULES = {"proto/metrics.py": {"threading"}}

ALLOWED: dict[str, set[str]] = {
    "proto": set(),
    "clients": {"proto"},
    "cluster": {"proto"},
    "controller": {"proto"},
    "chaos": set(PACKAGES),
}


def _modules() -> list[Path]:
    found: list[Path] = []
    for package in PACKAGES:
        found.extend(sorted((ROOT / package).rglob("*.py")))
    return found


def _imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _is_shell(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return (
        name.endswith(SHELL_SUFFIXES)
        or rel in COMPOSITION_ROOTS
        or rel in CLIENT_FACADES
        or rel.startswith("chaos/")
        or name.endswith("_pb2_grpc.py")
        or rel == "proto/generate.py"
    )


def _violations(rel: str, source: str) -> list[str]:
    package = rel.split("/")[0]
    roots = _imported_roots(ast.parse(source, filename=rel))
    problems: list[str] = []
    if rel not in COMPOSITION_ROOTS:
        allowed = set(ALLOWED[package]) | {package}
        if package == "cluster" and rel.endswith("_transport.py"):
            allowed.add("clients")
        for root in sorted(roots & set(PACKAGES)):
            if root not in allowed:
                problems.append(f"{rel} imports {root}")
    if not _is_shell(rel):
        for root in sorted(roots & SHELL_ONLY_MODULES - LOCK_ONLY_MODULES.get(rel, set())):
            problems.append(f"{rel} is a core but imports {root}")
    return problems


@pytest.mark.parametrize(
    "path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_module_respects_layering(path: Path) -> None:
    assert _violations(path.relative_to(ROOT).as_posix(), path.read_text()) == []


def test_the_checker_catches_forbidden_imports() -> None:
    # A checker that cannot fail proves nothing: feed it modules that break the rules.
    assert _violations("controller/probe.py", "import grpc\nfrom cluster import log\n") == [
        "controller/probe.py imports cluster",
        "controller/probe.py is a core but imports grpc",
    ]
    assert _violations("clients/probe.py", "import cluster.log\n") == [
        "clients/probe.py imports cluster"
    ]
    assert _violations("cluster/fetcher_transport.py", "from clients import Producer\n") == []
    assert _violations("cluster/replica.py", "from clients import x\nimport asyncio\n") == [
        "cluster/replica.py imports clients",
        "cluster/replica.py is a core but imports asyncio",
    ]
