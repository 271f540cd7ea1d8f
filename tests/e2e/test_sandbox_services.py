"""The sandbox's service controls: a restarted service is a new process that is
ready when `restart_service` returns (the step-by-step pod API in between)."""

from __future__ import annotations

import pytest

from dranet_sandbox.node import NodeSandbox

pytestmark = [pytest.mark.root, pytest.mark.runtime]


async def test_restarted_services_serve_the_next_steps(sandbox: NodeSandbox) -> None:
    nic = sandbox.nics[0]
    sandbox.control.create_claim("c1", parameters={"interface": {"name": "net1"}})
    pod = sandbox.new_pod("restarts", ["c1"])
    sandbox.allocate(pod)
    await sandbox.prepare(pod)
    old = {name: s.pid for name, s in sandbox.services.items()}

    for name in ("plugin", "hook", "agent"):
        service = await sandbox.restart_service(name)
        assert service.running and service.pid != old[name]

    await sandbox.run_sandbox(pod)  # the new hook and agent attach what was prepared before
    [link] = sandbox.pod_ip_json(pod, "addr", "show", "dev", "net1")
    # No addresses configured: the node's own address came along.
    assert [a["local"] for a in link["addr_info"] if a["scope"] == "global"] == ["10.200.1.2"]
    assert sandbox.ping(pod, nic.fabric_ip)
    await sandbox.wait_claim_status("c1")  # the new plugin writes the status
    await sandbox.stop_pod(pod)
    assert sandbox.nic_snapshot(nic.name) is not None
