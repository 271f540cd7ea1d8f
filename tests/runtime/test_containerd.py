"""The real runtime itself: a pod sandbox gets its own netns with a CNI eth0."""

from __future__ import annotations

import uuid

import pytest

from dranet_sandbox.containerd import Containerd
from dranet_sandbox.cri import CriClient, PodSpec
from dranet_sandbox.netlab import netns_exec

pytestmark = [pytest.mark.root, pytest.mark.runtime]


async def test_pod_sandbox_runs_with_cni_eth0_and_goes_away(containerd: Containerd) -> None:
    async with CriClient(containerd.cri_socket, containerd.base / "logs") as cri:
        version = await cri.version()
        assert version.runtime_name == "containerd"
        assert version.runtime_version.startswith("1.7.")
        pod_id = await cri.run_pod(PodSpec("p1", "default", str(uuid.uuid4())))
        netns = await cri.netns_path(pod_id)
        assert netns.startswith("/var/run/netns/cni-") or netns.startswith("/run/netns/cni-")
        name = netns.rsplit("/", 1)[1]
        addrs = netns_exec(name, "ip", "-j", "addr", "show", "dev", "eth0").stdout
        assert containerd.subnet.rsplit(".", 2)[0] in addrs
        await cri.stop_pod(pod_id)
        await cri.remove_pod(pod_id)
        assert await cri.list_pods() == []
