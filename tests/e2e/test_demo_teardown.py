"""`dranet demo --keep` killed outright: `--teardown DIR` removes what it left running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.runtime]
DEMO = [sys.executable, "-m", "dranet_sandbox.demo"]


def netns_with(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix + "-")]


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_teardown_after_the_demo_was_killed(tmp_path: Path) -> None:
    runtime = ["--runtime", "containerd"] if os.environ.get("CI") == "true" else []
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen([*DEMO, "--keep", *runtime], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "dranet demo --teardown" not in log.read_text():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        [base] = re.findall(r"dranet demo --teardown (\S+)", log.read_text())
        state = json.loads((Path(base) / "sandbox.json").read_text())
        assert sorted(state["services"]) == ["agent", "hook", "plugin"]
    finally:
        demo.send_signal(signal.SIGKILL)
        demo.wait()
    assert netns_with(state["prefix"]) != []
    assert processes_with(base) != []

    done = subprocess.run([*DEMO, "--teardown", base], check=False, capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("agent", "hook", "plugin"):
        assert f"stopped {name} (pid {state['services'][name]})" in lines
    if state["containerd"]:
        assert "removed 1 pod(s) through CRI" in lines
        assert f"stopped containerd (pid {state['containerd']['pid']})" in lines
    assert netns_with(state["prefix"]) == []
    assert processes_with(base) == []
    assert not Path(base).exists()
    again = subprocess.run([*DEMO, "--teardown", base], check=False, capture_output=True, text=True)
    assert again.returncode == 1
    assert "sandbox.json does not exist" in again.stderr
