"""`dranet status`: this node's devices, prepared claims and attachments, as tables or JSON.

Pure: `build_report` joins what the netlink agent answered (ListDevices,
ListAttachments) with what the claim-state store holds (claims, attachment
rows); `render_tables` and `report_json` present it. Gathering the inputs is
the CLI's job. Either source may be missing (None): the report shows what the
other one knows and says what to check.

A device's state is the strongest that applies:
- `attached`: the agent has it in a pod (its allocation is set);
- `allocated`: a prepared claim in the store names it, no pod has it yet;
- `published`: the agent offers it (the plugin's `--filter` may still hide it
  from the ResourceSlice);
- `missing`: a claim names it but the agent does not list it (only when the
  agent answered).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dranet.agent.v1 import agent_pb2
from dranet.store import AttachmentPhase, AttachmentRecord, ClaimRecord

ATTACHED = "attached"
ALLOCATED = "allocated"
PUBLISHED = "published"
MISSING = "missing"
EMPTY = "-"


@dataclass(frozen=True)
class DeviceRow:
    name: str
    ifname: str
    link: str | None  # operstate; None when the agent did not answer
    state: str  # attached / allocated / published / missing
    claim: str = ""  # namespace/name
    claim_uid: str = ""
    pod: str = ""  # namespace/name
    interface: str = ""  # name inside the pod


@dataclass(frozen=True)
class ClaimRow:
    uid: str
    namespace: str
    name: str
    pods: tuple[str, ...]  # namespace/name where known, else the pod UID
    devices: tuple[str, ...]  # "request=device"
    prepared_at: float


@dataclass(frozen=True)
class AttachmentRow:
    claim_uid: str
    device: str
    pod: str
    pod_uid: str
    interface: str
    netns: str
    ips: tuple[str, ...]
    mtu: int
    phase: str  # the store's phase (pending/moved/attached); "" if the store has no row
    source: str  # "agent", "store" (the agent does not report it) or "agent+store"


@dataclass(frozen=True)
class StatusReport:
    agent_socket: str
    store_path: str
    agent_error: str | None
    store_error: str | None
    devices: tuple[DeviceRow, ...]
    claims: tuple[ClaimRow, ...] | None  # None: the store could not be read
    attachments: tuple[AttachmentRow, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.agent_error is None and self.store_error is None


def _pod(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace or name else ""


def pod_names(
    attachments: Iterable[agent_pb2.Attachment], records: Iterable[AttachmentRecord]
) -> dict[str, str]:
    """Pod UID -> namespace/name, from whatever names the sources carry."""
    names = {r.pod_uid: _pod(r.pod_namespace, r.pod_name) for r in records}
    names.update({a.pod.uid: _pod(a.pod.namespace, a.pod.name) for a in attachments})
    return {uid: name for uid, name in names.items() if uid and name}


def device_rows(
    devices: Sequence[agent_pb2.Device] | None,
    claims: Sequence[ClaimRecord],
    records: Sequence[AttachmentRecord] = (),
) -> list[DeviceRow]:
    """One row per device the agent lists, plus devices claims name that it does not.

    `devices` None means the agent did not answer; `records` (the store's
    attachment rows) then stand in for its allocation data.
    """
    claimed: dict[str, ClaimRecord] = {}
    for claim in claims:
        for prepared in claim.devices:
            claimed.setdefault(prepared.device, claim)
    rows: dict[str, DeviceRow] = {}
    for device in devices or ():
        owner = claimed.get(device.name)
        claim_ref = _pod(owner.namespace, owner.name) if owner else ""
        claim_uid = owner.uid if owner else ""
        if device.HasField("allocation"):
            alloc = device.allocation
            rows[device.name] = DeviceRow(
                name=device.name,
                ifname=device.ifname,
                link=device.state,
                state=ATTACHED,
                claim=claim_ref,
                claim_uid=alloc.claim_uid or claim_uid,
                pod=_pod(alloc.pod.namespace, alloc.pod.name),
                interface=alloc.interface_name,
            )
        else:
            state = ALLOCATED if owner else PUBLISHED
            rows[device.name] = DeviceRow(
                device.name, device.ifname, device.state, state, claim_ref, claim_uid
            )
    # Devices named by claims that the agent did not list: without its answer
    # the store's attachment rows say which of them are in a pod (a pending
    # row means nothing has moved yet).
    attached = {}
    if devices is None:
        attached = {r.device: r for r in records if r.phase is not AttachmentPhase.PENDING}
    for name, claim in claimed.items():
        if name in rows:
            continue
        record = attached.get(name)
        rows[name] = DeviceRow(
            name=name,
            ifname=record.host_ifname if record else "",
            link=None,
            state=ATTACHED if record else ALLOCATED if devices is None else MISSING,
            claim=_pod(claim.namespace, claim.name),
            claim_uid=claim.uid,
            pod=_pod(record.pod_namespace, record.pod_name) if record else "",
            interface=record.pod_ifname if record else "",
        )
    return [rows[n] for n in sorted(rows)]


def claim_rows(claims: Sequence[ClaimRecord], pods: dict[str, str]) -> list[ClaimRow]:
    return [
        ClaimRow(
            uid=c.uid,
            namespace=c.namespace,
            name=c.name,
            pods=tuple(pods.get(uid, uid) for uid in c.pod_uids),
            devices=tuple(f"{d.request}={d.device}" for d in c.devices),
            prepared_at=c.prepared_at,
        )
        for c in claims
    ]


def attachment_rows(
    attachments: Sequence[agent_pb2.Attachment] | None, records: Sequence[AttachmentRecord]
) -> list[AttachmentRow]:
    """The agent's attachments with the store's phase, plus store rows the agent lacks."""
    phases = {(r.claim_uid, r.device): r for r in records}
    rows: dict[tuple[str, str], AttachmentRow] = {}
    for a in attachments or ():
        key = (a.interface.claim_uid, a.interface.device)
        record = phases.get(key)
        rows[key] = AttachmentRow(
            claim_uid=key[0],
            device=key[1],
            pod=_pod(a.pod.namespace, a.pod.name),
            pod_uid=a.pod.uid,
            interface=a.interface.interface_name,
            netns=a.netns_path,
            ips=tuple(a.interface.ips),
            mtu=a.interface.mtu,
            phase=record.phase.value if record else "",
            source="agent+store" if record else "agent",
        )
    for key, r in phases.items():
        if key not in rows:
            ips = r.result.get("ips") if isinstance(r.result, dict) else None
            rows[key] = AttachmentRow(
                claim_uid=r.claim_uid,
                device=r.device,
                pod=_pod(r.pod_namespace, r.pod_name),
                pod_uid=r.pod_uid,
                interface=r.pod_ifname,
                netns=r.netns_path,
                ips=tuple(str(ip) for ip in ips) if isinstance(ips, list) else (),
                mtu=int(r.result.get("mtu") or 0) if isinstance(r.result, dict) else 0,
                phase=r.phase.value,
                source="store",
            )
    return [rows[k] for k in sorted(rows)]


def build_report(
    *,
    agent_socket: str,
    store_path: str,
    devices: Sequence[agent_pb2.Device] | None,
    agent_attachments: Sequence[agent_pb2.Attachment] | None,
    claims: Sequence[ClaimRecord] | None,
    store_attachments: Sequence[AttachmentRecord] | None,
    agent_error: str | None = None,
    store_error: str | None = None,
) -> StatusReport:
    """Joins both sources; None for a source that could not be read (give its error)."""
    records = store_attachments or ()
    problems: list[str] = []
    if agent_error is not None:
        problems.append(f"netlink agent: {agent_error}")
    if store_error is not None:
        problems.append(f"claim-state store: {store_error}")
    attachments = attachment_rows(agent_attachments, records)
    if agent_attachments is not None:
        for row in (a for a in attachments if a.source == "store"):
            problems.append(
                f"the store records attachment {row.claim_uid}/{row.device} (phase "
                f"{row.phase}) that the agent does not report: an attach or detach was "
                "interrupted; the agent finishes it when it restarts, check its logs"
            )
    device_list = device_rows(devices, claims or (), records)
    for dev in (d for d in device_list if d.state == MISSING):
        problems.append(
            f"claim {dev.claim} ({dev.claim_uid}) was prepared with device {dev.name}, which "
            "the agent does not list: the NIC is gone, renamed or now an uplink, so its pod "
            "cannot start; check `ip link` on the node and the agent's logs"
        )
    pods = pod_names(agent_attachments or (), records)
    return StatusReport(
        agent_socket=agent_socket,
        store_path=store_path,
        agent_error=agent_error,
        store_error=store_error,
        devices=tuple(device_list),
        claims=None if claims is None else tuple(claim_rows(claims, pods)),
        attachments=tuple(attachments),
        problems=tuple(problems),
    )


# --- presentation ----------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; empty cells show as "-"."""
    cells = [list(headers)] + [[c if c else EMPTY for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""


def render_tables(report: StatusReport) -> str:
    """The three sections, each titled with its source; problems are the CLI's to print."""
    agent_note = "" if report.agent_error is None else " (agent unreachable: store view only)"
    parts = [f"DEVICES{agent_note}"]
    if report.devices:
        parts.append(
            format_table(
                ("DEVICE", "IFNAME", "LINK", "STATE", "CLAIM", "POD", "INTERFACE"),
                (
                    (
                        d.name,
                        d.ifname,
                        "?" if d.link is None else d.link,
                        d.state,
                        d.claim,
                        d.pod,
                        d.interface,
                    )
                    for d in report.devices
                ),
            )
        )
    else:
        parts.append("(none)")
    parts.append("")
    parts.append(f"PREPARED CLAIMS (store {report.store_path})")
    if report.claims is None:
        parts.append("(store unreadable)")
    elif report.claims:
        parts.append(
            format_table(
                ("CLAIM", "UID", "PODS", "DEVICES", "PREPARED"),
                (
                    (
                        f"{c.namespace}/{c.name}",
                        c.uid,
                        ",".join(c.pods),
                        ",".join(c.devices),
                        _when(c.prepared_at),
                    )
                    for c in report.claims
                ),
            )
        )
    else:
        parts.append("(none)")
    parts.append("")
    parts.append("ATTACHMENTS")
    if report.attachments:
        parts.append(
            format_table(
                ("CLAIM UID", "DEVICE", "POD", "INTERFACE", "IPS", "MTU", "PHASE", "SOURCE"),
                (
                    (
                        a.claim_uid,
                        a.device,
                        a.pod,
                        a.interface,
                        ",".join(a.ips),
                        str(a.mtu) if a.mtu else "",
                        a.phase,
                        a.source,
                    )
                    for a in report.attachments
                ),
            )
        )
    else:
        parts.append("(none)")
    return "\n".join(parts) + "\n"


def report_json(report: StatusReport) -> dict[str, Any]:
    """Plain data for `--json`: sections as lists of objects, unknown sections as null."""
    return {
        "ok": report.ok,
        "agent": {
            "socket": report.agent_socket,
            "reachable": report.agent_error is None,
            "error": report.agent_error,
        },
        "store": {
            "path": report.store_path,
            "readable": report.store_error is None,
            "error": report.store_error,
        },
        "devices": [asdict(d) for d in report.devices],
        "claims": None if report.claims is None else [asdict(c) for c in report.claims],
        "attachments": [asdict(a) for a in report.attachments],
        "problems": list(report.problems),
    }
