from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dranet.cli import check_health, main
from dranet.grpcserver import UnixServer


def test_missing_socket_says_what_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.sock"
    assert main(["health", "--socket", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"no socket at {path}: is the service running and the volume mounted?" in err


def test_regular_file_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    path.write_text("")
    problem = check_health(path)
    assert problem is not None and "is not a socket" in problem


def test_stale_socket_nobody_serves(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    problem = check_health(path, timeout=2)
    assert problem is not None
    assert f"cannot reach {path}" in problem and "UNAVAILABLE" in problem


async def test_serving_prints_and_exits_zero(tmp_path: Path) -> None:
    async with UnixServer(tmp_path / "a.sock", services=["svc"]) as server:
        done = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dranet.cli",
            "health",
            "--socket",
            str(server.path),
            "--service",
            "svc",
            "--timeout",
            "5",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await done.communicate()
        assert done.returncode == 0, err
        assert out.decode().strip() == f"{server.path}: SERVING (svc)"

        server.health.set("svc", False)
        code = await asyncio.to_thread(
            main, ["health", "--socket", str(server.path), "--service", "svc"]
        )
        assert code == 1
        problem = await asyncio.to_thread(check_health, server.path, "svc")
        assert problem is not None and "is NOT_SERVING" in problem and "check its logs" in problem


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "health" in capsys.readouterr().err
