"""Working inside other network namespaces without forking.

The agent runs gRPC threads, so it must never fork (pyroute2's `netns=`
forks a child to make its socket). Instead a short-lived dedicated thread
calls setns(2) — which changes only the calling thread's namespace — does
its work (create a netlink socket, write a /proc/sys/net file, run an ethtool
ioctl) and ends. A socket keeps the namespace it was created in for life,
so the returned netlink socket can be used from any thread afterwards.
setns into another network namespace needs CAP_SYS_ADMIN; that is why the
agent holds it.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pyroute2 import AsyncIPRoute

from dranet.errors import InvalidArgumentError, RefusedError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3): which kind of namespace an nsfs fd is
NETLINK_ROUTE = 0
_libc = ctypes.CDLL(None, use_errno=True)

Target = str | int | None  # a netns path, an open netns fd, or None for our own


def _is_netns(fd: int) -> bool:
    try:
        return bool(fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET)
    except OSError:
        return False


def open_netns(path: str) -> int:
    """Opens `path` and checks it is a network namespace; returns the fd."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise InvalidArgumentError(
            f"network namespace {path} does not exist",
            hint="the pod sandbox may already be gone",
        ) from exc
    except OSError as exc:
        raise InvalidArgumentError(f"cannot open network namespace {path}: {exc.strerror}") from exc
    if not _is_netns(fd):
        os.close(fd)
        raise RefusedError(
            f"{path} is not a network namespace",
            hint="pass the pod's netns path, e.g. /var/run/netns/cni-...",
        )
    return fd


NetnsId = tuple[int, int]  # (st_dev, st_ino) of the nsfs inode: a namespace's identity


def netns_id(fd: int) -> NetnsId:
    """The identity of the namespace open as `fd`."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def open_if_present(path: str, expected: NetnsId | None = None) -> int | None:
    """The namespace at `path` as an fd, or None when it is gone.

    Gone means: the path does not exist, is no longer a network namespace
    (an unmounted leftover file), or is another namespace than `expected`
    (the pod's namespace died and the name was reused). Any other error
    (EMFILE, EACCES...) says nothing about the pod and is raised as OSError.
    """
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    if _is_netns(fd) and (expected is None or netns_id(fd) == expected):
        return fd
    os.close(fd)
    return None


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _enter_and_call(target: Target, fn: Callable[[], T]) -> T:
    """Runs `fn` in this thread inside `target`; the thread must not be reused."""
    if target is None:
        return fn()
    fd = own = -1
    try:
        # The target first: a failed open must not leave our own fd behind.
        fd = open_netns(target) if isinstance(target, str) else target
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        _setns(fd)
        try:
            return fn()
        finally:
            _setns(own)
    finally:
        if own >= 0:
            os.close(own)
        if isinstance(target, str) and fd >= 0:
            os.close(fd)


def run_in_netns(target: Target, fn: Callable[[], T]) -> T:
    """Runs blocking `fn` inside a network namespace, in a dedicated thread."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = _enter_and_call(target, fn)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=body, name="dranet-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def arun_in_netns(target: Target, fn: Callable[[], T]) -> T:
    """`run_in_netns` without blocking the event loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any = None, error: BaseException | None = None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def body() -> None:
        try:
            value = _enter_and_call(target, fn)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, value)

    threading.Thread(target=body, name="dranet-netns", daemon=True).start()
    return await future


def netlink_socket(target: Target = None) -> socket.socket:
    """A NETLINK_ROUTE socket living in `target` (created there, usable anywhere)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return sock

    return run_in_netns(target, make)


@asynccontextmanager
async def rtnl(target: Target = None) -> AsyncIterator[AsyncIPRoute]:
    """An AsyncIPRoute bound to `target`: `async with rtnl(path) as ipr`.

    The socket is closed afterwards: pyroute2 leaves a socket passed with
    `use_socket=` open when the IPRoute closes.
    """
    sock = await asyncio.to_thread(netlink_socket, target)
    try:
        async with AsyncIPRoute(use_socket=sock) as ipr:
            yield ipr
    finally:
        sock.close()


def same_netns(a: str, b: str) -> bool:
    """True when two paths name the same network namespace (same nsfs inode)."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
