"""Generated code is committed; regenerating it must change nothing (no drift).

Every `api/**/*.proto` is compiled again, with the same compiler and plugins
as `make proto` (grpcio-tools, mypy-protobuf), into a temporary directory;
each generated file must exist in the tree with identical bytes. A generated
file whose .proto is gone is stale.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
API = REPO / "api"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
# The typed stubs come from mypy-protobuf's protoc plugins, installed next to python.
BIN = Path(sys.executable).parent


def _protos() -> list[Path]:
    return sorted(API.rglob("*.proto"))


def _regenerate(out: Path) -> dict[Path, bytes]:
    protos = [str(p.relative_to(REPO)) for p in _protos()]
    assert protos, f"no .proto files under {API}"
    plugins = {name: BIN / f"protoc-gen-{name}" for name in ("mypy", "mypy_grpc")}
    absent = [str(path) for path in plugins.values() if not path.exists()]
    assert not absent, f"protoc plugins missing: {absent}; install the test extras (mypy-protobuf)"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "api",
            *(f"--plugin=protoc-gen-{name}={path}" for name, path in plugins.items()),
            f"--python_out={out}",
            f"--mypy_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_grpc_out={out}",
            *protos,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, f"protoc failed:\n{run.stderr}"
    return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_every_generated_file_is_committed_and_current(tmp_path: Path) -> None:
    fresh = _regenerate(tmp_path)
    missing = sorted(str(rel) for rel in fresh if not (API / rel).is_file())
    differing = sorted(
        str(rel)
        for rel, data in fresh.items()
        if (API / rel).is_file() and (API / rel).read_bytes() != data
    )
    problems = [f"missing: api/{name}" for name in missing]
    problems += [f"differs: api/{name}" for name in differing]
    assert not problems, (
        "generated code is out of date with its .proto files; run `make proto` and commit:\n  "
        + "\n  ".join(problems)
    )


def test_no_generated_file_without_its_proto() -> None:
    sources = {p.with_suffix("") for p in _protos()}
    stale = []
    for path in API.rglob("*_pb2*"):
        if path.suffix not in (".py", ".pyi") or not path.name.endswith(GENERATED_SUFFIXES):
            continue
        stem = path.name.removesuffix(".pyi").removesuffix(".py")
        stem = stem.removesuffix("_grpc").removesuffix("_pb2")
        if path.with_name(stem) not in sources:
            stale.append(str(path.relative_to(REPO)))
    assert not stale, f"generated files whose .proto is gone (delete them): {sorted(stale)}"


def test_every_proto_is_imported_under_its_path() -> None:
    # Generated code imports its dependencies as dranet.<path>; a proto outside
    # api/dranet would generate modules the package cannot import.
    outside = [str(p.relative_to(REPO)) for p in _protos() if not p.is_relative_to(API / "dranet")]
    assert not outside, f"move these under api/dranet/: {outside}"
