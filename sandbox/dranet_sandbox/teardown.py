"""Tear down a node sandbox whose owner died (`dranet demo --teardown DIR`).

A `NodeSandbox` cleans up after itself, also on Ctrl-C. If its process is
killed outright (SIGKILL, a closed terminal under `--keep`), what it started
keeps running: the services, containerd, the pod, the namespaces. The
sandbox records them in `<dir>/sandbox.json` (`write_state`); `teardown`
reads it and, in the order that gives the NICs back:

1. removes every pod through containerd's CRI while the NRI hook and the
   agent still run (the agent moves each NIC back to the node);
2. stops the services and containerd (SIGTERM, then SIGKILL), each only if
   its /proc/<pid>/cmdline still names the sandbox dir (no pid reuse
   accidents);
3. unmounts what containerd left under its dir, deletes the sandbox's
   namespaces (`<prefix>-*`, which also removes the CNI bridge) and the dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc

from dranet.errors import NotFoundError
from dranet_sandbox.cri import CriClient

STATE_FILE = "sandbox.json"


def write_state(base: Path, state: dict[str, Any]) -> None:
    tmp = base / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(base / STATE_FILE)


def _owned(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def _stop_pid(pid: int, marker: str, timeout: float = 10) -> bool:
    """SIGTERM, then SIGKILL; False when `pid` is not (any more) ours."""
    if not _owned(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _owned(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _owned(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


async def _remove_pods(socket: Path, log_dir: Path) -> int:
    async with CriClient(socket, log_dir) as cri:
        pods = await cri.list_pods()
        await cri.remove_all()
    return len(pods)


def teardown(base: Path) -> list[str]:
    """Tears down the sandbox in `base`; returns what it did, one line per step."""
    state_path = base / STATE_FILE
    if not state_path.is_file():
        raise NotFoundError(
            f"{state_path} does not exist", hint="pass the sandbox dir the demo printed"
        )
    state = json.loads(state_path.read_text())
    marker = str(base)
    done: list[str] = []
    ctr = state.get("containerd") or {}
    if ctr.get("pid") and _owned(int(ctr["pid"]), marker):
        try:
            count = asyncio.run(_remove_pods(Path(ctr["cri_socket"]), Path(ctr["base"]) / "logs"))
            done.append(f"removed {count} pod(s) through CRI")
        except grpc.RpcError as exc:
            done.append(f"could not remove pods through CRI: {exc}")
    for name, pid in sorted((state.get("services") or {}).items()):
        if pid and _stop_pid(int(pid), marker):
            done.append(f"stopped {name} (pid {pid})")
    if ctr.get("pid") and _stop_pid(int(ctr["pid"]), marker):
        done.append(f"stopped containerd (pid {ctr['pid']})")
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(marker + "/")
    ]
    for target in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    if mounts:
        done.append(f"unmounted {len(mounts)} mount(s)")
    prefix = str(state.get("prefix", ""))
    if prefix:
        listed = subprocess.run(
            ["ip", "netns", "list"], check=False, capture_output=True, text=True
        )
        for line in listed.stdout.splitlines():
            netns = line.split()[0] if line.strip() else ""
            if netns.startswith(prefix + "-"):
                subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
                done.append(f"deleted netns {netns}")
    shutil.rmtree(base, ignore_errors=True)
    done.append(f"removed {base}")
    return done
