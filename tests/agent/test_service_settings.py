"""Agent settings: flags, environment twins, the crash test hook's validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dranet.errors import SettingsError
from dranet_netlink_agent.netnspaths import DEFAULT_ROOTS
from dranet_netlink_agent.settings import load_settings

AGENT = Path(sys.executable).parent / "dranet-netlink-agent"


def test_defaults() -> None:
    settings = load_settings([])
    assert settings.socket == "/run/dranet/agent/agent.sock"
    assert settings.roots == DEFAULT_ROOTS
    assert settings.ignored == ("cilium_net", "cilium_host", "docker0")
    assert settings.crash_at == ""


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRANET_IGNORE", "eth9, ib0")
    monkeypatch.setenv("DRANET_AGENT_CRASH_AT", "moved")
    settings = load_settings(["--netns-roots", "/srv/ns/", "--state-db", "/tmp/x.db"])
    assert settings.roots == ("/srv/ns/",)
    assert settings.ignored == ("eth9", "ib0")
    assert settings.state_db == "/tmp/x.db"
    assert settings.crash_at == "moved"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--crash-at", "later"], "not a crash point"),
        (["--netns-roots", " , "], "netns-roots is empty"),
        (["--resync-interval", "0"], "must be positive"),
    ],
)
def test_bad_values_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(argv)


def test_console_script_reports_a_bad_flag_in_one_line() -> None:
    done = subprocess.run(
        [str(AGENT), "--crash-at", "whenever"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("dranet-netlink-agent: error:")
    assert "not a crash point" in done.stderr
