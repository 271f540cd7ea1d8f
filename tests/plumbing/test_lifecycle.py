from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap

import pytest

from dranet.errors import PeerError
from dranet.lifecycle import error_line, run_until_stopped

SERVICE = textwrap.dedent(
    """
    import asyncio, sys
    from dranet.errors import StoreError
    from dranet.lifecycle import run

    async def main(stop: asyncio.Event) -> None:
        print("ready", flush=True)
        await stop.wait()
        print("stopping", flush=True)
        if sys.argv[1] == "fail":
            raise StoreError("cannot open /var/lib/dranet/state.db", hint="check the volume")
        if sys.argv[1] == "hang":
            await asyncio.sleep(60)
        print("stopped", flush=True)

    run(main, service="netlink-agent")
    """
)


def start(mode: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", SERVICE, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_exit_zero(sig: signal.Signals) -> None:
    child = start("clean")
    child.send_signal(sig)
    out, err = child.communicate(timeout=20)
    assert child.returncode == 0, err
    assert out.split() == ["stopping", "stopped"]
    assert err == ""


def test_dranet_error_is_one_line_and_exit_one() -> None:
    child = start("fail")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=20)
    assert child.returncode == 1
    assert err.splitlines() == [
        "dranet-netlink-agent: error: cannot open /var/lib/dranet/state.db (check the volume)"
    ]


def test_second_signal_cancels_a_stuck_stop() -> None:
    child = start("hang")
    assert child.stdout is not None
    child.send_signal(signal.SIGTERM)
    assert child.stdout.readline().strip() == "stopping"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=20)
    assert child.returncode == 1
    assert "dranet-netlink-agent: error: stopped by a second signal" in err


def test_main_returning_on_its_own_exits_zero() -> None:
    async def main(stop: asyncio.Event) -> None:
        assert not stop.is_set()

    assert run_until_stopped(main, service="nri-hook") == 0


def test_error_line_is_one_line() -> None:
    line = error_line("kubelet-plugin", PeerError("agent\nunreachable", hint="is it running?"))
    assert line == "dranet-kubelet-plugin: error: agent unreachable (is it running?)"
