"""`dranet status`: pure report building, and the CLI against a fake agent and a real store."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from dranet import status
from dranet.agent.v1 import agent_pb2
from dranet.cli import main
from dranet.grpcserver import UnixServer
from dranet.store import (
    AttachmentPhase,
    AttachmentRecord,
    ClaimRecord,
    PreparedDevice,
    Role,
    Store,
)

BOOT = "boot-1"
AGENT_SERVICE = "dranet.agent.v1.NetlinkAgent"


def device(name: str, state: str = "up", *, pod: str = "", claim_uid: str = "") -> Any:
    dev = agent_pb2.Device(name=name, ifname=name, state=state)
    if pod:
        dev.allocation.CopyFrom(
            agent_pb2.Allocation(
                pod=agent_pb2.PodRef(uid=f"uid-{pod}", namespace="ns", name=pod),
                claim_uid=claim_uid,
                interface_name="net1",
            )
        )
    return dev


def attachment(claim_uid: str, dev: str, pod: str) -> agent_pb2.Attachment:
    return agent_pb2.Attachment(
        pod=agent_pb2.PodRef(uid=f"uid-{pod}", namespace="ns", name=pod),
        netns_path=f"/var/run/netns/cni-{pod}",
        interface=agent_pb2.InterfaceResult(
            claim_uid=claim_uid,
            device=dev,
            interface_name="net1",
            ips=["10.0.0.2/24"],
            mtu=1400,
        ),
    )


def claim(uid: str, name: str, *devices: str, pods: tuple[str, ...] = ()) -> ClaimRecord:
    return ClaimRecord(
        uid=uid,
        namespace="ns",
        name=name,
        pod_uids=pods,
        devices=tuple(PreparedDevice("req", "node-a", d, {}) for d in devices),
        prepared_at=1_800_000_000.0,
    )


def record(
    claim_uid: str, dev: str, pod: str, phase: AttachmentPhase = AttachmentPhase.ATTACHED
) -> AttachmentRecord:
    return AttachmentRecord(
        claim_uid=claim_uid,
        device=dev,
        pod_uid=f"uid-{pod}",
        pod_namespace="ns",
        pod_name=pod,
        netns_path=f"/var/run/netns/cni-{pod}",
        phase=phase,
        host_ifname=dev,
        pod_ifname="net1",
        original={"mtu": 1500},
        result={"ips": ["10.0.0.2/24"], "mtu": 1400},
    )


# --- pure -----------------------------------------------------------------------------

# eth1 is in pod web (claim c1), eth2 prepared for claim c2, eth3 free, eth4 is
# named by claim c3 but gone from the agent's list.
DEVICES = [device("eth1", "down", pod="web", claim_uid="c1"), device("eth2"), device("eth3")]
CLAIMS = [
    claim("c1", "one", "eth1", pods=("uid-web",)),
    claim("c2", "two", "eth2", pods=("uid-db",)),
    claim("c3", "three", "eth4"),
]


def states(rows: Any) -> dict[str, str]:
    return {r.name: r.state for r in rows}


def test_device_states_from_both_sources() -> None:
    rows = status.device_rows(DEVICES, CLAIMS)
    assert states(rows) == {
        "eth1": status.ATTACHED,
        "eth2": status.ALLOCATED,
        "eth3": status.PUBLISHED,
        "eth4": status.MISSING,
    }
    eth1 = rows[0]
    assert (eth1.pod, eth1.interface, eth1.claim, eth1.claim_uid) == (
        "ns/web",
        "net1",
        "ns/one",
        "c1",
    )
    assert eth1.link == "down"
    assert rows[1].claim == "ns/two" and rows[1].pod == ""
    assert rows[3].link is None


def test_device_states_without_the_agent_come_from_the_store() -> None:
    records = [record("c1", "eth1", "web"), record("c2", "eth2", "db", AttachmentPhase.PENDING)]
    rows = status.device_rows(None, CLAIMS, records)
    assert states(rows) == {
        "eth1": status.ATTACHED,
        "eth2": status.ALLOCATED,  # a pending row: nothing has moved yet
        "eth4": status.ALLOCATED,
    }
    assert rows[0].pod == "ns/web" and rows[0].link is None


def test_attachments_merge_the_agent_view_and_store_phases() -> None:
    rows = status.attachment_rows(
        [attachment("c1", "eth1", "web")],
        [record("c1", "eth1", "web"), record("c9", "eth9", "old", AttachmentPhase.MOVED)],
    )
    assert [(r.claim_uid, r.device, r.phase, r.source) for r in rows] == [
        ("c1", "eth1", "attached", "agent+store"),
        ("c9", "eth9", "moved", "store"),
    ]
    assert rows[0].ips == ("10.0.0.2/24",) and rows[0].mtu == 1400
    assert rows[1].ips == ("10.0.0.2/24",) and rows[1].pod == "ns/old"


def test_report_names_pods_and_flags_interrupted_attachments() -> None:
    report = status.build_report(
        agent_socket="/a.sock",
        store_path="/s.db",
        devices=DEVICES,
        agent_attachments=[attachment("c1", "eth1", "web")],
        claims=CLAIMS,
        store_attachments=[record("c1", "eth1", "web"), record("c9", "eth9", "old")],
    )
    assert report.ok
    assert report.claims is not None
    assert [c.pods for c in report.claims] == [("ns/web",), ("uid-db",), ()]
    assert [c.devices for c in report.claims] == [("req=eth1",), ("req=eth2",), ("req=eth4",)]
    assert len(report.problems) == 2
    assert (
        "attachment c9/eth9 (phase attached) that the agent does not report" in (report.problems[0])
    )
    assert report.problems[1].startswith(
        "claim ns/three (c3) was prepared with device eth4, which the agent does not list"
    )


def test_report_without_a_source_says_so() -> None:
    report = status.build_report(
        agent_socket="/a.sock",
        store_path="/s.db",
        devices=DEVICES,
        agent_attachments=[],
        claims=None,
        store_attachments=None,
        store_error="no claim-state store at /s.db",
    )
    assert not report.ok and report.claims is None
    assert report.problems == ("claim-state store: no claim-state store at /s.db",)
    assert states(report.devices)["eth2"] == status.PUBLISHED  # no claim known for it
    text = status.render_tables(report)
    assert "PREPARED CLAIMS (store /s.db)\n(store unreadable)" in text
    assert status.report_json(report)["claims"] is None


def test_format_table_aligns_and_marks_empty_cells() -> None:
    table = status.format_table(("A", "LONGER"), [("xyz", ""), ("", "1")])
    assert table.splitlines() == ["A    LONGER", "xyz  -", "-    1"]


def test_tables_and_json_carry_the_same_facts() -> None:
    report = status.build_report(
        agent_socket="/a.sock",
        store_path="/s.db",
        devices=DEVICES,
        agent_attachments=[attachment("c1", "eth1", "web")],
        claims=CLAIMS,
        store_attachments=[record("c1", "eth1", "web")],
    )
    text = status.render_tables(report)
    lines = text.splitlines()
    assert lines[0] == "DEVICES"
    assert lines[1].split() == ["DEVICE", "IFNAME", "LINK", "STATE", "CLAIM", "POD", "INTERFACE"]
    assert lines[2].split() == ["eth1", "eth1", "down", "attached", "ns/one", "ns/web", "net1"]
    assert lines[5].split() == ["eth4", "-", "?", "missing", "ns/three", "-", "-"]
    when = datetime.fromtimestamp(CLAIMS[0].prepared_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ["ns/one", "c1", "ns/web", "req=eth1", when] in [line.split() for line in lines]
    attached = ["c1", "eth1", "ns/web", "net1", "10.0.0.2/24", "1400", "attached", "agent+store"]
    assert attached in [line.split() for line in lines]

    data = json.loads(json.dumps(status.report_json(report)))
    assert data["ok"] is True and data["agent"]["reachable"] and data["store"]["readable"]
    assert [d["state"] for d in data["devices"]] == [
        "attached",
        "allocated",
        "published",
        "missing",
    ]
    assert data["claims"][0]["pods"] == ["ns/web"]
    assert data["attachments"][0]["phase"] == "attached"


# --- the CLI against a fake agent and a real store ----------------------------------------


class FakeAgent:
    """ListDevices and ListAttachments only, as the agent answers them."""

    def __init__(self) -> None:
        self.devices: list[agent_pb2.Device] = []
        self.attachments: list[agent_pb2.Attachment] = []

    async def list_devices(self, request: Any, context: Any) -> agent_pb2.ListDevicesResponse:
        return agent_pb2.ListDevicesResponse(devices=self.devices)

    async def list_attachments(
        self, request: Any, context: Any
    ) -> agent_pb2.ListAttachmentsResponse:
        return agent_pb2.ListAttachmentsResponse(attachments=self.attachments)

    def add_to(self, server: grpc.aio.Server) -> None:
        methods = {
            "ListDevices": grpc.unary_unary_rpc_method_handler(
                self.list_devices,
                request_deserializer=agent_pb2.ListDevicesRequest.FromString,
                response_serializer=agent_pb2.ListDevicesResponse.SerializeToString,
            ),
            "ListAttachments": grpc.unary_unary_rpc_method_handler(
                self.list_attachments,
                request_deserializer=agent_pb2.ListAttachmentsRequest.FromString,
                response_serializer=agent_pb2.ListAttachmentsResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(AGENT_SERVICE, methods),)
        )


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can exceed that.
    path = Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def state_db(short_dir: Path) -> Path:
    """A store as the services leave it: claims by the plugin, attachments by the agent."""
    path = short_dir / "state" / "state.db"
    with Store(path, role=Role.PLUGIN, boot_id=BOOT) as plugin:
        plugin.put_claim(claim("c1", "one", "eth1", pods=("uid-web",)))
        plugin.put_claim(claim("c2", "two", "eth2", pods=("uid-db",)))
    with Store(path, role=Role.AGENT, boot_id=BOOT) as agent:
        agent.put_attachment(record("c1", "eth1", "web"))
    return path


@pytest.fixture
async def agent(short_dir: Path) -> AsyncIterator[tuple[FakeAgent, Path]]:
    fake = FakeAgent()
    fake.devices = [device("eth1", pod="web", claim_uid="c1"), device("eth2"), device("eth3")]
    fake.attachments = [attachment("c1", "eth1", "web")]
    async with UnixServer(short_dir / "run" / "agent.sock", adders=[fake.add_to]) as server:
        yield fake, server.path


async def run_status(*args: str) -> int:
    # The CLI is blocking; the fake agent serves on this event loop.
    return await asyncio.to_thread(main, ["status", *args])


async def test_status_shows_devices_claims_and_attachments(
    agent: tuple[FakeAgent, Path], state_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, sock = agent
    code = await run_status("--agent-socket", str(sock), "--state-db", str(state_db))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("eth")}
    assert rows["eth1"][3:6] == ["attached", "ns/one", "ns/web"]
    assert rows["eth2"][3:5] == ["allocated", "ns/two"]
    assert rows["eth3"][3] == "published"
    assert f"PREPARED CLAIMS (store {state_db})" in out
    assert any(line.split()[:3] == ["ns/one", "c1", "ns/web"] for line in out.splitlines())
    assert any(line.split()[-2:] == ["attached", "agent+store"] for line in out.splitlines())


async def test_json_parses_and_environment_sets_the_paths(
    agent: tuple[FakeAgent, Path],
    state_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, sock = agent
    fake.devices.append(device("eth5", "lowerlayerdown"))
    monkeypatch.setenv("DRANET_AGENT_SOCKET", str(sock))
    monkeypatch.setenv("DRANET_STATE_DB", str(state_db))
    assert await run_status("--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert data["agent"]["socket"] == str(sock) and data["store"]["path"] == str(state_db)
    assert {d["name"]: d["link"] for d in data["devices"]}["eth5"] == "lowerlayerdown"
    assert [c["uid"] for c in data["claims"]] == ["c1", "c2"]
    assert data["attachments"][0]["netns"] == "/var/run/netns/cni-web"


async def test_agent_down_still_shows_the_store_and_exits_1(
    short_dir: Path, state_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = short_dir / "agent.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # left behind by a crashed agent
        stale.bind(str(sock))
    code = await run_status("--agent-socket", str(sock), "--state-db", str(state_db))
    out, err = capsys.readouterr()
    assert code == 1
    assert f"dranet status: netlink agent: cannot reach the netlink agent at {sock}" in err
    assert "is the netlink-agent container running?" in err
    assert "DEVICES (agent unreachable: store view only)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("eth")}
    assert rows["eth1"][2:6] == ["?", "attached", "ns/one", "ns/web"]
    assert rows["eth2"][2:4] == ["?", "allocated"]
    assert any(line.split()[-2:] == ["attached", "store"] for line in out.splitlines())


async def test_no_agent_socket_in_json_mode(
    short_dir: Path, state_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = short_dir / "missing.sock"
    code = await run_status("--agent-socket", str(sock), "--state-db", str(state_db), "--json")
    captured = capsys.readouterr()
    assert code == 1
    data = json.loads(captured.out)
    assert data["ok"] is False and data["agent"]["reachable"] is False
    assert data["agent"]["error"].startswith(f"no socket at {sock}")
    assert "--agent-socket / DRANET_AGENT_SOCKET" in data["agent"]["error"]
    assert [c["uid"] for c in data["claims"]] == ["c1", "c2"]


async def test_missing_store_still_shows_the_agent_and_exits_1(
    agent: tuple[FakeAgent, Path], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, sock = agent
    db = short_dir / "nowhere" / "state.db"
    code = await run_status("--agent-socket", str(sock), "--state-db", str(db))
    out, err = capsys.readouterr()
    assert code == 1
    assert f"dranet status: claim-state store: no claim-state store at {db}" in err
    assert "--state-db / DRANET_STATE_DB" in err
    assert not db.exists()  # a reader never creates the store
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("eth")}
    assert rows["eth1"][3] == "attached" and rows["eth2"][3] == "published"
    assert "(store unreadable)" in out


async def test_a_socket_that_is_not_the_agent(
    short_dir: Path, state_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with UnixServer(short_dir / "other.sock") as other:  # health service only
        code = await run_status("--agent-socket", str(other.path), "--state-db", str(state_db))
    assert code == 1
    err = capsys.readouterr().err
    assert f"{other.path} does not serve the netlink agent API" in err


async def test_json_alone_on_stdout_from_the_console_entry(
    agent: tuple[FakeAgent, Path], state_db: Path
) -> None:
    _, sock = agent
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dranet.cli",
        "status",
        "--agent-socket",
        str(sock),
        "--state-db",
        str(state_db),
        "--json",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await done.communicate()
    assert done.returncode == 0, err
    data = json.loads(out)
    assert [d["name"] for d in data["devices"]] == ["eth1", "eth2", "eth3"]
