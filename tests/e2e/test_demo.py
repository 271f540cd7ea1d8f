"""`dranet demo --json` as a subprocess: one JSON object on stdout, every field sane.

Runs `dranet demo` when the `dranet.cli` entry point is installed, else the
same code as `python -m dranet_sandbox.demo`. In CI the demo must use the
real containerd; elsewhere it may fall back to the NRI stand-in.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.runtime]
IN_CI = os.environ.get("CI") == "true"


def demo_command() -> list[str]:
    names = [e.name for e in importlib.metadata.entry_points(group="dranet.cli")]
    if "demo" in names:
        return [str(Path(sys.executable).parent / "dranet"), "demo"]
    return [sys.executable, "-m", "dranet_sandbox.demo"]


def run_demo(*args: str) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [*demo_command(), "--json", *args], check=False, capture_output=True, text=True, timeout=90
    )
    assert done.stdout.count("\n") == 1, f"stdout is not one line:\n{done.stdout}\n{done.stderr}"
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    assert done.returncode == (0 if report["ok"] else 1), done.stderr
    return report, done.stderr


def check_report(report: dict[str, Any], stderr: str) -> None:
    assert report["ok"] is True, stderr[-3000:]
    assert report["devices_published"] == 2
    [slice_name] = report["resourceslices"]
    assert slice_name.startswith("00000-dra.net-")
    claim = report["claim"]
    assert re.fullmatch(r"[0-9a-f-]{36}", claim["uid"])
    assert claim["prepared"] is True
    [status] = claim["status_devices"]
    assert (status["driver"], status["device"]) == ("dra.net", "eth1")
    assert status["networkData"] == {
        "interfaceName": "net1",
        "ips": ["10.200.1.10/24"],
        "hardwareAddress": report["restored"]["mac"],
    }
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    pod = report["pod"]
    assert pod == {"interface": "net1", "addresses": ["10.200.1.10/24"], "mtu": 1400, "ping": True}
    restored = report["restored"]
    assert restored["name"] == "eth1"
    assert restored["mtu"] == 1500
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", restored["mac"])
    assert restored["same_as_before"] is True
    for step in ("prepare", "attach", "detach"):
        assert 0 < report["timings_ms"][step] < 10_000, report["timings_ms"]
    ipaddress.ip_interface(pod["addresses"][0])


def test_demo_json() -> None:
    report, stderr = run_demo()
    check_report(report, stderr)
    if IN_CI or not report.get("runtime_note"):
        assert report["runtime"].startswith("containerd 1.7."), report
        assert "runtime_note" not in report


def test_demo_json_with_the_runtime_stand_in() -> None:
    report, stderr = run_demo("--runtime", "stand-in", "--nics", "2")
    check_report(report, stderr)
    assert report["runtime"] == "stand-in"
    assert report["runtime_note"] == "the NRI runtime stand-in was asked for"
