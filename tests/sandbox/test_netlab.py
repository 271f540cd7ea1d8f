"""The lab itself: namespaces appear, NICs carry traffic, everything goes away."""

from __future__ import annotations

import pytest

from dranet_sandbox.netlab import NetLab, ip_json, netns_exec

pytestmark = pytest.mark.root


def test_lab_builds_node_fabric_and_pods_and_removes_them() -> None:
    with NetLab() as lab:
        lab.add_nic("eth1", node_cidr="192.0.2.1/24", fabric_cidr="192.0.2.2/24", mtu=1400)
        pod = lab.add_pod()
        names = {n["name"] for n in ip_json("netns", "list")}
        assert {lab.node, lab.fabric, pod} <= names
        link = lab.link("eth1", lab.node)
        assert link is not None and link["mtu"] == 1400
        assert lab.link("eth1", pod) is None
        netns_exec(lab.node, "ping", "-c1", "-W2", "192.0.2.2")
    after = {n["name"] for n in ip_json("netns", "list")}
    assert not {lab.node, lab.fabric, pod} & after
