"""Which netns paths the agent accepts: pure checks, plus real symlinks on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dranet.errors import InvalidArgumentError, RefusedError
from dranet_netlink_agent.netnspaths import DEFAULT_ROOTS, PID_TEMPLATE, check_netns_path


def _identity(path: str) -> str:
    return path


WITH_PIDS = (*DEFAULT_ROOTS, PID_TEMPLATE)


@pytest.mark.parametrize(
    "path",
    ["/var/run/netns/cni-1234", "/run/netns/cni-abc", "/proc/4242/ns/net", "/run/netns/a/b"],
)
def test_paths_under_the_roots_are_accepted(path: str) -> None:
    assert check_netns_path(path, WITH_PIDS, resolve=_identity) == path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "empty"),
        ("run/netns/x", "relative"),
        ("/run/netns/../../etc/passwd", "'..'"),
        ("/run/netns/..", "'..'"),
    ],
)
def test_malformed_paths_are_invalid(path: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check_netns_path(path, resolve=_identity)


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/run/netns",  # the root itself is not a namespace
        "/run/netnsx/evil",  # a prefix of a root is not the root
        "/proc/self/ns/net",  # the agent's own namespace
        "/proc/1/ns/mnt",
        "/proc/12/task/13/ns/net",
        "/proc/0/ns/net",
    ],
)
def test_paths_outside_the_roots_are_refused(path: str) -> None:
    with pytest.raises(RefusedError, match="outside the allowed roots"):
        check_netns_path(path, WITH_PIDS, resolve=_identity)


def test_the_roots_are_configurable() -> None:
    assert check_netns_path("/srv/ns/x", ["/srv/ns"], resolve=_identity) == "/srv/ns/x"
    with pytest.raises(RefusedError):
        check_netns_path("/proc/7/ns/net", ["/srv/ns"], resolve=_identity)
    with pytest.raises(RefusedError):
        check_netns_path("/run/netns/x", ["/srv/ns"], resolve=_identity)
    # A pid path is opt-in: by default only the runtimes' bind-mount directories.
    assert DEFAULT_ROOTS == ("/var/run/netns/", "/run/netns/")
    with pytest.raises(RefusedError):
        check_netns_path("/proc/7/ns/net", resolve=_identity)
    assert check_netns_path("/proc/7/ns/net", [PID_TEMPLATE]) == "/proc/7/ns/net"


def test_a_symlink_escaping_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "netns"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", root / "escape")
    os.symlink(root / "real", root / "inside")
    with pytest.raises(RefusedError, match="resolved"):
        check_netns_path(str(root / "escape"), [str(root)])
    assert check_netns_path(str(root / "inside"), [str(root)]) == str(root / "real")


def test_a_symlinked_root_still_matches(tmp_path: Path) -> None:
    # /var/run is a symlink to /run on most systems: both spellings must work.
    real = tmp_path / "run" / "netns"
    real.mkdir(parents=True)
    alias = tmp_path / "var-run"
    os.symlink(tmp_path / "run", alias)
    got = check_netns_path(str(alias / "netns" / "cni-1"), [str(alias / "netns")])
    assert got == str(real / "cni-1")
