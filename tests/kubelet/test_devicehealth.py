"""DRA device health: the pure tracker, and the kubelet-facing stream fed by a fake agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dranet.agent.v1 import agent_pb2, agent_pb2_grpc
from dranet.grpcserver import UnixServer, unix_channel
from dranet.kubelet.drahealth.v1alpha1 import api_pb2 as health_pb2
from dranet.kubelet.drahealth.v1alpha1 import api_pb2_grpc as health_grpc
from dranet_kubelet_plugin.devicehealth import (
    MESSAGE_LIMIT,
    DeviceHealthServicer,
    DeviceHealthTracker,
    Health,
    device_health_servicer_adder,
    health_response,
    state_health,
    truncate,
)

Kind = agent_pb2.DeviceEvent.Kind
NODE = "node-a"
AGENT_SERVICE = "dranet.agent.v1.NetlinkAgent"


def dev(name: str, state: str = "up", *, pod: str = "", ifname: str = "") -> agent_pb2.Device:
    device = agent_pb2.Device(name=name, ifname=ifname or name, state=state)
    if pod:
        device.allocation.CopyFrom(
            agent_pb2.Allocation(
                pod=agent_pb2.PodRef(uid=f"uid-{pod}", namespace="ns", name=pod),
                claim_uid="claim-1",
                interface_name="net1",
            )
        )
    return device


def event(kind: int, *devices: agent_pb2.Device) -> agent_pb2.DeviceEvent:
    return agent_pb2.DeviceEvent(kind=kind, devices=list(devices))  # type: ignore[arg-type]


def healths(tracker: DeviceHealthTracker, now: float = 0.0) -> dict[str, Health]:
    return {e.device: e.health for e in tracker.devices(now)}


# --- pure ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "health"),
    [
        ("up", Health.HEALTHY),
        ("UP", Health.HEALTHY),
        ("unknown", Health.HEALTHY),
        ("down", Health.UNHEALTHY),
        ("lowerlayerdown", Health.UNHEALTHY),
        ("notpresent", Health.UNHEALTHY),
        ("dormant", Health.UNKNOWN),
        ("testing", Health.UNKNOWN),
        ("", Health.UNKNOWN),
    ],
)
def test_operstate_maps_to_health(state: str, health: Health) -> None:
    assert state_health(state) is health
    tracker = DeviceHealthTracker()
    tracker.apply(event(Kind.SNAPSHOT, dev("eth1", state)), now=1.0)
    assert healths(tracker) == {"eth1": health}


def test_health_numbers_match_the_proto() -> None:
    for health in Health:
        assert health_pb2.HealthStatus.Value(health.name) == health.value


def test_snapshot_then_changes() -> None:
    tracker = DeviceHealthTracker()
    assert not tracker.ready and tracker.devices(0) == []
    assert tracker.apply(event(Kind.SNAPSHOT, dev("eth1"), dev("eth2", "down")), now=10)
    assert tracker.ready and tracker.connected
    assert healths(tracker) == {"eth1": Health.HEALTHY, "eth2": Health.UNHEALTHY}
    # The same facts again change nothing, so watchers are not woken.
    assert not tracker.apply(event(Kind.SNAPSHOT, dev("eth1"), dev("eth2", "down")), now=11)
    assert not tracker.apply(event(Kind.MODIFIED, dev("eth1")), now=12)

    assert tracker.apply(event(Kind.MODIFIED, dev("eth1", "lowerlayerdown")), now=20)
    entry = tracker.devices(20)[0]
    assert (entry.device, entry.health, entry.changed_at) == ("eth1", Health.UNHEALTHY, 20)
    assert entry.message == "link eth1 operstate lowerlayerdown"

    assert tracker.apply(event(Kind.ADDED, dev("eth3", "unknown")), now=30)
    assert healths(tracker) == {
        "eth1": Health.UNHEALTHY,
        "eth2": Health.UNHEALTHY,
        "eth3": Health.HEALTHY,
    }
    assert [e.device for e in tracker.devices(30)] == ["eth1", "eth2", "eth3"]


def test_removed_device_is_unhealthy_then_forgotten_and_can_come_back() -> None:
    tracker = DeviceHealthTracker(forget_after=100)
    tracker.apply(event(Kind.SNAPSHOT, dev("eth1"), dev("eth2")), now=0)
    assert tracker.apply(event(Kind.REMOVED, dev("eth1")), now=5)
    gone = tracker.devices(5)[0]
    assert gone.health is Health.UNHEALTHY and gone.changed_at == 5
    assert "link eth1 is gone from the node" in gone.message
    # A repeated removal keeps the first removal time.
    assert not tracker.apply(event(Kind.REMOVED, dev("eth1")), now=50)
    assert healths(tracker, now=104) == {"eth1": Health.UNHEALTHY, "eth2": Health.HEALTHY}
    assert healths(tracker, now=105) == {"eth2": Health.HEALTHY}

    tracker.apply(event(Kind.REMOVED, dev("eth2")), now=200)
    assert tracker.apply(event(Kind.ADDED, dev("eth2")), now=210)
    assert healths(tracker, now=1000) == {"eth2": Health.HEALTHY}


def test_removing_an_unknown_device_changes_nothing() -> None:
    tracker = DeviceHealthTracker()
    tracker.apply(event(Kind.SNAPSHOT, dev("eth1")), now=0)
    assert not tracker.apply(event(Kind.REMOVED, dev("eth9")), now=1)
    assert healths(tracker) == {"eth1": Health.HEALTHY}


def test_a_new_snapshot_marks_missing_devices_gone() -> None:
    tracker = DeviceHealthTracker()
    tracker.apply(event(Kind.SNAPSHOT, dev("eth1"), dev("eth2")), now=0)
    assert tracker.apply(event(Kind.SNAPSHOT, dev("eth2")), now=1)
    assert healths(tracker) == {"eth1": Health.UNHEALTHY, "eth2": Health.HEALTHY}


def test_attached_device_is_healthy_whatever_its_last_node_state() -> None:
    tracker = DeviceHealthTracker()
    tracker.apply(event(Kind.SNAPSHOT, dev("eth1", "up")), now=0)
    # Moving the link takes it down on the node; that is the attach, not a fault.
    tracker.apply(event(Kind.MODIFIED, dev("eth1", "down", pod="web")), now=1)
    entry = tracker.devices(1)[0]
    assert entry.health is Health.HEALTHY and entry.changed_at == 0
    assert entry.message == (
        "attached to pod ns/web as net1; link eth1 is not watched inside the pod "
        "(last seen on the node: down)"
    )
    # Back on the node, the link state counts again.
    tracker.apply(event(Kind.MODIFIED, dev("eth1", "down")), now=9)
    assert healths(tracker) == {"eth1": Health.UNHEALTHY}


def test_attached_device_removed_by_the_agent_is_unhealthy() -> None:
    tracker = DeviceHealthTracker()
    tracker.apply(event(Kind.SNAPSHOT, dev("veth9", "lowerlayerdown", pod="web")), now=0)
    assert healths(tracker) == {"veth9": Health.HEALTHY}
    tracker.apply(event(Kind.REMOVED, dev("veth9")), now=3)
    assert healths(tracker) == {"veth9": Health.UNHEALTHY}


def test_agent_loss_makes_everything_unknown_until_the_next_snapshot() -> None:
    tracker = DeviceHealthTracker()
    tracker.apply(event(Kind.SNAPSHOT, dev("eth1"), dev("eth2", "down")), now=0)
    assert tracker.disconnected(now=7, reason="UNAVAILABLE")
    assert not tracker.connected and tracker.last_contact == 7
    entries = tracker.devices(7)
    assert {e.health for e in entries} == {Health.UNKNOWN}
    assert entries[0].message == (
        "the netlink agent is unreachable (UNAVAILABLE); last known: link eth1 operstate up"
    )
    # Failed reconnects neither nest the message nor move the time of contact.
    assert not tracker.disconnected(now=9, reason="DEADLINE_EXCEEDED")
    assert tracker.devices(9)[0].message == entries[0].message
    assert tracker.last_contact == 7

    assert tracker.apply(event(Kind.SNAPSHOT, dev("eth2")), now=12)
    assert tracker.connected
    assert healths(tracker) == {"eth1": Health.UNHEALTHY, "eth2": Health.HEALTHY}


def test_include_limits_to_published_devices() -> None:
    tracker = DeviceHealthTracker(include=lambda d: not d.name.startswith("veth"))
    tracker.apply(event(Kind.SNAPSHOT, dev("eth1"), dev("veth0")), now=0)
    assert healths(tracker) == {"eth1": Health.HEALTHY}
    tracker.apply(event(Kind.ADDED, dev("veth1", "down")), now=1)
    assert healths(tracker) == {"eth1": Health.HEALTHY}


def test_unknown_event_kind_is_ignored() -> None:
    tracker = DeviceHealthTracker()
    assert not tracker.apply(event(Kind.KIND_UNSPECIFIED, dev("eth1")), now=0)
    assert tracker.devices(0) == [] and not tracker.ready


def test_messages_are_cut_to_the_kubelet_limit() -> None:
    assert truncate("x" * MESSAGE_LIMIT) == "x" * MESSAGE_LIMIT
    cut = truncate("x" * (MESSAGE_LIMIT + 1))
    assert len(cut) == MESSAGE_LIMIT and cut.endswith("...")
    tracker = DeviceHealthTracker()
    tracker.apply(event(Kind.SNAPSHOT, dev("eth1", "up", pod="p" * 2000)), now=0)
    assert len(tracker.devices(0)[0].message) == MESSAGE_LIMIT


def test_response_carries_pool_time_and_timeout() -> None:
    tracker = DeviceHealthTracker()
    tracker.apply(event(Kind.SNAPSHOT, dev("eth1"), dev("eth2", "down")), now=0)
    response = health_response(tracker.devices(0), pool=NODE, updated=1234.9, timeout_seconds=90)
    got = [
        (d.device.pool_name, d.device.device_name, d.health, d.last_updated_time)
        for d in response.devices
    ]
    assert got == [
        (NODE, "eth1", health_pb2.HEALTHY, 1234),
        (NODE, "eth2", health_pb2.UNHEALTHY, 1234),
    ]
    assert {d.health_check_timeout_seconds for d in response.devices} == {90}


def test_servicer_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="pool is empty"):
        DeviceHealthServicer(DeviceHealthTracker(), pool="")
    with pytest.raises(ValueError, match="interval must be positive"):
        DeviceHealthServicer(DeviceHealthTracker(), pool=NODE, interval=0)


# --- over real unix sockets -------------------------------------------------------


class FakeAgent:
    """An agent that only serves WatchDevices: a SNAPSHOT of `devices`, then what `push` sends."""

    def __init__(self, *devices: agent_pb2.Device) -> None:
        self.devices = {d.name: d for d in devices}
        self.streams: set[asyncio.Queue[agent_pb2.DeviceEvent]] = set()
        self.connects = 0

    def push(self, kind: int, *devices: agent_pb2.Device) -> None:
        for device in devices:
            if kind == Kind.REMOVED:
                self.devices.pop(device.name, None)
            else:
                self.devices[device.name] = device
        for queue in self.streams:
            queue.put_nowait(event(kind, *devices))

    async def watch_devices(
        self, request: agent_pb2.WatchDevicesRequest, context: Any
    ) -> AsyncIterator[agent_pb2.DeviceEvent]:
        queue: asyncio.Queue[agent_pb2.DeviceEvent] = asyncio.Queue()
        self.streams.add(queue)
        self.connects += 1
        try:
            yield event(Kind.SNAPSHOT, *self.devices.values())
            while True:
                yield await queue.get()
        finally:
            self.streams.discard(queue)

    def add_to(self, server: grpc.aio.Server) -> None:
        handler = grpc.unary_stream_rpc_method_handler(
            self.watch_devices,
            request_deserializer=agent_pb2.WatchDevicesRequest.FromString,
            response_serializer=agent_pb2.DeviceEvent.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(AGENT_SERVICE, {"WatchDevices": handler}),)
        )


def summary(response: health_pb2.NodeWatchResourcesResponse) -> dict[str, int]:
    return {d.device.device_name: d.health for d in response.devices}


async def next_where(
    stream: Any, want: dict[str, int], timeout: float = 5.0
) -> health_pb2.NodeWatchResourcesResponse:
    """Reads the stream until a message's health summary equals `want`."""
    async with asyncio.timeout(timeout):
        async for response in stream:
            if summary(response) == want:
                return response  # type: ignore[no-any-return]
    raise AssertionError(f"the health stream ended before it reported {want}")


class Rig:
    """A fake agent and the plugin's DRA socket serving device health, as in production."""

    def __init__(self, root: Path, agent: FakeAgent, interval: float) -> None:
        self.agent = agent
        self.agent_server = UnixServer(
            root / "agent" / "agent.sock",
            adders=[agent.add_to],
        )
        self.servicer = DeviceHealthServicer(DeviceHealthTracker(), pool=NODE, interval=interval)
        self.dra_server = UnixServer(
            root / "plugins" / "dra.net" / "dra.sock",
            adders=[device_health_servicer_adder(self.servicer)],
        )
        self.channels: list[grpc.aio.Channel] = []
        self.follow: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.agent_server.start()
        await self.dra_server.start()
        self.agent_channel = unix_channel(self.agent_server.path)
        stub = agent_pb2_grpc.NetlinkAgentStub(self.agent_channel)
        self.follow = asyncio.create_task(self.servicer.follow(stub, reconnect_delay=0.05))

    def watch(self) -> Any:
        channel = unix_channel(self.dra_server.path)
        self.channels.append(channel)
        stub = health_grpc.DRAResourceHealthStub(channel)
        return stub.NodeWatchResources(health_pb2.NodeWatchResourcesRequest())

    async def stop(self) -> None:
        if self.follow is not None:
            self.follow.cancel()
            await asyncio.gather(self.follow, return_exceptions=True)
        for channel in self.channels:
            await channel.close(None)
        await self.agent_channel.close(None)
        await self.dra_server.stop(0)
        await self.agent_server.stop(0)


@pytest.fixture
async def rig(kubelet_root: Path) -> AsyncIterator[Rig]:
    under_test = Rig(kubelet_root, FakeAgent(dev("eth1"), dev("eth2")), interval=30.0)
    await under_test.start()
    yield under_test
    await under_test.stop()


HEALTHY, UNHEALTHY, UNKNOWN = health_pb2.HEALTHY, health_pb2.UNHEALTHY, health_pb2.UNKNOWN


async def test_link_down_reaches_every_kubelet_watcher(rig: Rig) -> None:
    first, second = rig.watch(), rig.watch()
    start = await next_where(first, {"eth1": HEALTHY, "eth2": HEALTHY})
    await next_where(second, {"eth1": HEALTHY, "eth2": HEALTHY})
    assert {d.device.pool_name for d in start.devices} == {NODE}
    assert {d.health_check_timeout_seconds for d in start.devices} == {90}
    assert rig.servicer.watchers == 2

    rig.agent.push(Kind.MODIFIED, dev("eth1", "down"))
    for stream in (first, second):
        got = await next_where(stream, {"eth1": UNHEALTHY, "eth2": HEALTHY})
        eth1 = got.devices[0]
        assert eth1.message == "link eth1 operstate down" and eth1.last_updated_time > 0

    rig.agent.push(Kind.REMOVED, dev("eth2"))
    got = await next_where(first, {"eth1": UNHEALTHY, "eth2": UNHEALTHY})
    assert "gone from the node" in got.devices[1].message

    first.cancel()
    async with asyncio.timeout(5):
        state, health = "up", HEALTHY
        while rig.servicer.watchers != 1:  # a change wakes the cancelled stream, which ends
            rig.agent.push(Kind.MODIFIED, dev("eth1", state))
            await next_where(second, {"eth1": health, "eth2": UNHEALTHY})
            state, health = ("down", UNHEALTHY) if state == "up" else ("up", HEALTHY)


async def test_agent_loss_turns_devices_unknown_and_recovers(rig: Rig) -> None:
    stream = rig.watch()
    await next_where(stream, {"eth1": HEALTHY, "eth2": HEALTHY})
    await rig.agent_server.stop(0)
    lost = await next_where(stream, {"eth1": UNKNOWN, "eth2": UNKNOWN})
    assert "the netlink agent is unreachable" in lost.devices[0].message

    await rig.agent_server.start()
    await next_where(stream, {"eth1": HEALTHY, "eth2": HEALTHY})
    assert rig.agent.connects >= 2


async def test_full_list_is_resent_at_the_interval(kubelet_root: Path) -> None:
    rig = Rig(kubelet_root, FakeAgent(dev("eth1")), interval=0.1)
    await rig.start()
    try:
        stream = rig.watch()
        loop = asyncio.get_running_loop()
        await next_where(stream, {"eth1": HEALTHY})
        began = loop.time()
        for _ in range(3):  # no change happens: these are the periodic sends
            await next_where(stream, {"eth1": HEALTHY})
        assert loop.time() - began >= 0.25
        assert rig.servicer.tracker.connected
    finally:
        await rig.stop()
