"""Regenerate the gRPC/protobuf stubs in proto/ from proto/*.proto, or check that they are fresh.

    python -m proto.generate           # rewrite the stubs in place
    python -m proto.generate --check   # exit 1, listing stale files, if the stubs are not fresh

protoc runs with the repository root as its only include path and output root, so each
`.proto` imports its neighbours as `import "proto/common.proto";` and the generated modules
import each other as `from proto import common_pb2`, wherever the repository is checked out.

Outputs per `.proto`: `<name>_pb2.py` and `<name>_pb2.pyi`; files that declare a service also
get `<name>_pb2_grpc.py` (files without one would get an empty grpc module, so they don't).

Generation is deterministic: the same `.proto` files and the same grpcio-tools version give
byte-identical stubs (protoc embeds only repository-relative paths). The stubs also record the
generator's version (`GRPC_GENERATED_VERSION`, the protobuf runtime check), so a different
grpcio-tools version shows up as stale files: regenerate with the pinned version, or regenerate
and commit when the pin moves.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]

# Every file name this script may create; anything matching that no `.proto` produces any more is
# an orphan, deleted on regeneration and reported by --check.
_GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
_SERVICE_RE = re.compile(r"^\s*service\s+\w+", re.MULTILINE)


def proto_sources(root: Path = ROOT) -> list[Path]:
    """The `.proto` files to compile, sorted so protoc sees them in a stable order."""
    return sorted((root / "proto").glob("*.proto"))


def _has_service(source: Path) -> bool:
    text = re.sub(r"//[^\n]*", "", source.read_text(encoding="utf-8"))
    return _SERVICE_RE.search(text) is not None


def _run_protoc(root: Path, args: list[str]) -> None:
    # grpc_tools bundles google/protobuf/*.proto; include them in case a file imports one.
    well_known = resources.files("grpc_tools") / "_proto"
    argv = ["grpc_tools.protoc", f"-I{root}", f"-I{well_known}", *args]
    code = protoc.main(argv)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}: {' '.join(argv[1:])}")


def generate_into(out_root: Path, root: Path = ROOT) -> list[Path]:
    """Compile every `root`/proto/*.proto into `out_root`/proto/.

    Args:
        out_root: stands in for the repository root; it must exist.
        root: the repository root holding the sources.

    Returns:
        The generated files, relative to `out_root`, sorted.

    Raises:
        RuntimeError: protoc reported an error (its messages are on stderr).
    """
    sources = proto_sources(root)
    if not sources:
        raise RuntimeError(f"no .proto files in {root / 'proto'}")
    (out_root / "proto").mkdir(parents=True, exist_ok=True)
    outputs = [f"--python_out={out_root}", f"--pyi_out={out_root}"]
    _run_protoc(root, [*outputs, *map(str, sources)])
    with_services = [str(source) for source in sources if _has_service(source)]
    if with_services:
        _run_protoc(root, [f"--grpc_python_out={out_root}", *with_services])
    return sorted(path.relative_to(out_root) for path in (out_root / "proto").iterdir())


def is_generated_name(name: str) -> bool:
    return name.endswith(_GENERATED_SUFFIXES)


def stale_files(root: Path = ROOT) -> list[str]:
    """Compare the committed stubs under `root`/proto with a fresh generation.

    Returns:
        One line per problem, e.g. "proto/broker_pb2.py: differs"; empty when everything is fresh.
    """
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rafka-proto-") as tmp:
        fresh = generate_into(Path(tmp), root)
        for rel in fresh:
            committed = root / rel
            if not committed.exists():
                problems.append(f"{rel.as_posix()}: missing")
            elif committed.read_bytes() != (Path(tmp) / rel).read_bytes():
                problems.append(f"{rel.as_posix()}: differs")
        expected = {rel.name for rel in fresh}
        for path in sorted((root / "proto").iterdir()):
            if is_generated_name(path.name) and path.name not in expected:
                problems.append(f"proto/{path.name}: orphan (no .proto generates it)")
    return problems


def regenerate(root: Path = ROOT) -> list[str]:
    """Rewrite the stubs in place: write changed files, delete orphans.

    Generating into a temporary directory first means a protoc error leaves the committed stubs
    untouched, and unchanged files keep their modification times.

    Returns:
        The files written or deleted, relative to the repository root.
    """
    changed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rafka-proto-") as tmp:
        fresh = generate_into(Path(tmp), root)
        for rel in fresh:
            source, target = Path(tmp) / rel, root / rel
            if not target.exists() or target.read_bytes() != source.read_bytes():
                shutil.copyfile(source, target)
                changed.append(rel.as_posix())
        expected = {rel.name for rel in fresh}
        for path in sorted((root / "proto").iterdir()):
            if is_generated_name(path.name) and path.name not in expected:
                path.unlink()
                changed.append(f"proto/{path.name} (deleted)")
    return changed


def _generator_version() -> str:
    from grpc_tools import grpc_version

    return str(grpc_version.VERSION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proto.generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="generate into a temporary directory and fail if the committed stubs differ",
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files()
        if problems:
            print(
                f"proto stubs are stale (generator: grpcio-tools {_generator_version()}); "
                "run `python -m proto.generate`:",
                file=sys.stderr,
            )
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            return 1
        print("proto stubs are fresh")
        return 0
    changed = regenerate()
    for line in changed:
        print(line)
    print(f"{len(changed)} file(s) changed (grpcio-tools {_generator_version()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
