"""The plugin process, started from its console script, with the kubelet and API
server stand-ins and a fake agent: registration, prepare/unprepare over v1 and
v1beta1, ResourceSlices, claim status, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dranet.agent.v1 import agent_pb2
from dranet.store import Role, Store
from dranet_sandbox.standins.apiserver import FakeApiServer, iter_slices
from dranet_sandbox.standins.kubelet import Claim, KubeletStandin

from .fakes import DRIVER, NODE, AgentServer, FakeAgent, claim, eventually, nic, opaque, result

SCRIPT = Path(sys.executable).parent / "dranet-kubelet-plugin"


@pytest.fixture
def fake_agent() -> FakeAgent:
    return FakeAgent([nic("eth1", type="device"), nic("eth2", type="device"), nic("veth9")])


@pytest.fixture
async def kubelet(socket_dir: Path) -> AsyncIterator[KubeletStandin]:
    async with KubeletStandin(socket_dir / "kubelet") as standin:
        yield standin


@dataclass
class PluginRun:
    process: asyncio.subprocess.Process
    kubelet_root: Path
    state_db: Path


@pytest.fixture
async def plugin(
    socket_dir: Path,
    tmp_path: Path,
    apiserver: FakeApiServer,
    agent: AgentServer,
    kubelet: KubeletStandin,
) -> AsyncIterator[PluginRun]:
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRANET_", "OTEL_"))}
    env["DRANET_NODE_NAME"] = NODE  # an environment twin
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        f"--kubelet-root-dir={socket_dir / 'kubelet'}",
        f"--agent-socket={agent.path}",
        f"--state-db={tmp_path / 'state' / 'state.db'}",
        f"--kubeconfig={kubeconfig}",
        "--metrics-port=0",
        "--resync-seconds=0.5",
        env=env,
    )
    yield PluginRun(process, socket_dir / "kubelet", tmp_path / "state" / "state.db")
    if process.returncode is None:
        process.kill()
        await process.wait()


def slice_devices(apiserver: FakeApiServer) -> list[str]:
    return sorted(
        d["name"]
        for s in iter_slices(apiserver, DRIVER, NODE)
        for d in s["spec"].get("devices", [])
    )


async def test_plugin_process_end_to_end(
    plugin: PluginRun, kubelet: KubeletStandin, apiserver: FakeApiServer, agent: AgentServer
) -> None:
    async with asyncio.timeout(20):
        registered = await kubelet.wait_registered(DRIVER)
    assert registered.service == "v1.DRAPlugin"
    assert registered.endpoint == plugin.kubelet_root / "plugins" / DRIVER / "dra.sock"

    # the default filter hides veths, as dranet's
    await eventually(lambda: slice_devices(apiserver) == ["eth1", "eth2"], timeout=10)

    apiserver.put(
        "resourceclaims",
        claim(
            "web",
            "uid-v1",
            results=[
                result("nic", "eth1"),
                result("gpu", "gpu-0", driver="gpu.example.com", pool="gpus"),
            ],
            config=[opaque({"interface": {"name": "net1"}})],
        ),
    )
    apiserver.put("resourceclaims", claim("db", "uid-beta", results=[result("nic", "eth2")]))
    apiserver.put(
        "resourceclaims",
        claim(
            "bad",
            "uid-bad",
            results=[result("nic", "eth2")],
            config=[opaque({"interface": {"mtu": "big"}})],
        ),
    )

    v1 = await kubelet.prepare(
        [Claim("default", "web", "uid-v1"), Claim("default", "bad", "uid-bad")]
    )
    assert v1["uid-v1"].error == ""
    assert [(d.pool_name, d.device_name) for d in v1["uid-v1"].devices] == [(NODE, "eth1")]
    assert "interface.mtu" in v1["uid-bad"].error
    beta = await kubelet.prepare([Claim("default", "db", "uid-beta")], service="v1beta1.DRAPlugin")
    assert [d.device_name for d in beta["uid-beta"].devices] == ["eth2"]
    replaced = await kubelet.prepare([Claim("default", "db", "uid-old")])
    assert "got replaced" in replaced["uid-old"].error

    with Store(plugin.state_db, role=Role.READER, boot_id="x") as reader:
        record = reader.get_claim("uid-v1")
        assert record is not None and record.devices[0].config["interface"]["name"] == "net1"

    agent.agent.attach(
        agent_pb2.Attachment(
            pod=agent_pb2.PodRef(uid="pod-uid-1", namespace="default", name="web"),
            netns_path="/var/run/netns/cni-1",
            interface=agent_pb2.InterfaceResult(
                claim_uid="uid-v1",
                request="nic",
                pool=NODE,
                device="eth1",
                interface_name="net1",
                mac="02:00:00:00:00:01",
                ips=["10.0.0.5/24"],
            ),
        )
    )

    def network_data() -> Any:
        stored = apiserver.get("resourceclaims", "web", "default") or {}
        devices = (stored.get("status") or {}).get("devices") or []
        return devices[0]["networkData"] if devices else None

    data = await eventually(network_data, timeout=10)
    assert data == {
        "interfaceName": "net1",
        "ips": ["10.0.0.5/24"],
        "hardwareAddress": "02:00:00:00:00:01",
    }

    # the kubelet wipes the node's slices at its start: they come back
    apiserver.delete_collection("resourceslices", f"spec.nodeName={NODE}")
    await eventually(lambda: slice_devices(apiserver) == ["eth1", "eth2"], timeout=10)

    errors = await kubelet.unprepare(
        [Claim("default", "web", "uid-v1"), Claim("default", "db", "uid-beta")],
        service="v1beta1.DRAPlugin",
    )
    assert errors == {"uid-v1": "", "uid-beta": ""}
    assert sorted(agent.agent.released) == ["uid-beta", "uid-v1"]
    with Store(plugin.state_db, role=Role.READER, boot_id="x") as reader:
        assert reader.get_claim("uid-v1") is None

    plugin.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await plugin.process.wait() == 0
    assert not (plugin.kubelet_root / "plugins_registry" / f"{DRIVER}-reg.sock").exists()
    assert not registered.endpoint.exists()
