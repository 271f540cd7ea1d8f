"""Which network-namespace paths a caller may hand the agent.

The agent is privileged: a path it opens and setns(2)es into must be a pod
sandbox's namespace, never an arbitrary file. A path is accepted only when it
is absolute, has no `..` component and, once symlinks are resolved, lies under
one of the allowed roots. A root is a directory (`/run/netns/`) or the
template `/proc/<pid>/ns/net`, which matches that exact shape for a numeric
pid (those entries are kernel magic links, so they are not resolved).

Pure apart from the injectable `resolve` (os.path.realpath by default).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from dranet.errors import InvalidArgumentError, RefusedError

PID_TEMPLATE = "/proc/<pid>/ns/net"
# containerd and CRI-O pass /var/run/netns/...; a pid path is opt-in (--netns-roots):
# any process's namespace matches it, the node's own included.
DEFAULT_ROOTS: tuple[str, ...] = ("/var/run/netns/", "/run/netns/")
_PROC_NET = re.compile(r"^/proc/[1-9][0-9]*/ns/net$")


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/") + "/"
    return path.startswith(root) and len(path) > len(root)


def check_netns_path(
    path: str,
    roots: Sequence[str] = DEFAULT_ROOTS,
    *,
    resolve: Callable[[str], str] = os.path.realpath,
) -> str:
    """Returns the path to open (resolved) or raises a clear error.

    InvalidArgumentError for malformed input (empty, relative, `..`),
    RefusedError for a well-formed path outside every allowed root.
    """
    if not path:
        raise InvalidArgumentError(
            "netns path is empty", hint="pass the pod sandbox's network namespace path"
        )
    if "\x00" in path:
        raise InvalidArgumentError("netns path contains a NUL byte")
    if not path.startswith("/"):
        raise InvalidArgumentError(f"netns path {path!r} is relative", hint="pass an absolute path")
    if ".." in path.split("/"):
        raise InvalidArgumentError(
            f"netns path {path!r} contains '..'", hint="pass the namespace path without '..'"
        )
    allowed = ", ".join(roots)
    normal = os.path.normpath(path)
    if PID_TEMPLATE in roots and _PROC_NET.match(normal):
        return normal
    dirs = [root for root in roots if root != PID_TEMPLATE]
    # Resolve symlinks first so a link under an allowed root cannot point outside it.
    real = resolve(normal)
    for root in dirs:
        real_root = resolve(root.rstrip("/") or "/")
        if _under(real, real_root):
            return real
    raise RefusedError(
        f"netns path {path!r} (resolved {real!r}) is outside the allowed roots ({allowed})",
        hint="the agent only enters pod namespaces; configure --netns-roots to allow others",
    )
