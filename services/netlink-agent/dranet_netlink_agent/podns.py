"""The pod network namespace of one AttachPod call: opened once, checked, compared.

`open_target` resolves the netns path within the allowed roots, opens it and
refuses a namespace that is the node's own (or another host namespace the
agent knows); every later step uses the descriptor, never the path again.
`is_current` tells whether an attached row belongs to this same namespace
(by its recorded namespace id; rows without one by path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dranet.errors import RefusedError
from dranet.store import AttachmentRecord
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import recorded_netns
from dranet_netlink_agent.netns import NetnsId, netns_id, open_netns, same_netns
from dranet_netlink_agent.netnspaths import check_netns_path


@dataclass(frozen=True)
class PodTarget:
    """The pod namespace of one AttachPod call, opened once.

    Every step of the call uses `fd`, never the path again: a path like
    /proc/<pid>/ns/net may name another namespace a moment later.
    """

    path: str  # resolved; recorded in the rows
    fd: int
    ident: NetnsId


def open_target(ctx: AgentContext, path: str) -> PodTarget:
    resolved = check_netns_path(path, ctx.netns_roots)
    fd = open_netns(resolved)  # raises when it is not a network namespace
    try:
        ident = netns_id(fd)
        what = ctx.host_netns_ids().get(ident)
        if what:
            raise RefusedError(
                f"netns path {path!r} is {what}, not a pod's; refusing to move devices there",
                hint="pass the pod sandbox's own network namespace",
            )
    except BaseException:
        os.close(fd)
        raise
    return PodTarget(resolved, fd, ident)


def is_current(row: AttachmentRecord, target: PodTarget) -> bool:
    recorded = recorded_netns(row)
    if recorded is not None:
        return recorded == target.ident
    return row.netns_path == target.path or same_netns(row.netns_path, target.path)
