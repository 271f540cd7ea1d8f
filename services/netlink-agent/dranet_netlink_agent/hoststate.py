"""The host-side state of an interface, recorded before attach and restored after.

The state is a plain JSON-able dict stored in the attachment row
(`AttachmentRecord.original`). Reading it lives in hostread.py (`capture`,
the filtered address/route/neighbour/rule dumps), putting it back in
hostrestore.py (`restore_on_node`), with the route helpers from routing.py;
this module compares two of them
(`diff`, used by tests and logs) and re-exports both halves under the one
name callers have always imported.
"""

from __future__ import annotations

from typing import Any

from dranet_netlink_agent.hostread import (
    IFA_KEEP_FLAGS,
    LINK_FIELDS,
    NUD_PERMANENT,
    RT_TABLE_DEFAULT,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTPROT_KERNEL,
    addresses_of,
    capture,
    global_addresses,
    in_netns_of,
    keep_route,
    master_of,
    neighbors_of,
    route_entry,
    routes_of,
    rules_for_tables,
)
from dranet_netlink_agent.hostrestore import (
    link_values,
    restore_ethtool_on_node,
    restore_master,
    restore_on_node,
    restore_order,
    restore_sysctls_on_node,
)
from dranet_netlink_agent.routing import RT_SCOPE_LINK, link_scope_first, route_kwargs

__all__ = [
    "IFA_KEEP_FLAGS",
    "LINK_FIELDS",
    "NUD_PERMANENT",
    "RTPROT_KERNEL",
    "RT_SCOPE_LINK",
    "RT_TABLE_DEFAULT",
    "RT_TABLE_LOCAL",
    "RT_TABLE_MAIN",
    "addresses_of",
    "capture",
    "diff",
    "global_addresses",
    "in_netns_of",
    "keep_route",
    "link_scope_first",
    "link_values",
    "master_of",
    "neighbors_of",
    "restore_ethtool_on_node",
    "restore_master",
    "restore_on_node",
    "restore_order",
    "restore_sysctls_on_node",
    "route_entry",
    "route_kwargs",
    "routes_of",
    "rules_for_tables",
]


def _key(entry: dict[str, Any]) -> str:
    return repr(sorted((k, v) for k, v in entry.items() if k != "priority" or v))


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human-readable differences between two captured states ([] when equal)."""
    out = [
        f"{key}: {before.get(key)!r} -> {after.get(key)!r}"
        for key in (*LINK_FIELDS, "permanent_mac", "master", "ethtool", "sysctls")
        if before.get(key) != after.get(key)
    ]
    for key in ("addresses", "routes", "neighbors"):
        b = sorted(_key(e) for e in before.get(key, []))
        a = sorted(_key(e) for e in after.get(key, []))
        if a != b:
            out.append(f"{key}: {b} -> {a}")
    return out
