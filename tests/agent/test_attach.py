"""AttachPod against real veth NICs: every configured field checked with `ip -j` in the pod."""

from __future__ import annotations

import dataclasses
import struct
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dranet.store import AttachmentPhase, Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_sandbox.netlab import NetLab, ip, ip_json, netns_exec

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-1", "default", "web-0")


def _wait_no_tentative(netns: str, ifname: str) -> None:
    for _ in range(50):
        infos = ip_json("addr", "show", "dev", ifname, netns=netns)[0]["addr_info"]
        if not any(a.get("tentative") for a in infos):
            return
        time.sleep(0.1)


async def test_full_configuration_lands_in_the_pod(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nic1", node_cidr="10.10.0.2/24", fabric_cidr="10.10.0.1/24")
    pod = lab.add_pod()
    config = {
        "interface": {
            "name": "net1",
            "addresses": ["192.168.50.2/24", "fd50::2/64"],
            "mtu": 1400,
            "hardwareAddr": "02:aa:bb:cc:dd:01",
            "gsoMaxSize": 32000,
            "groMaxSize": 33000,
            "forwarding": True,
            "arpIgnore": 1,
            "arpAnnounce": 2,
        },
        "routes": [
            {"destination": "10.77.0.0/16", "gateway": "192.168.50.1"},
            {"destination": "10.88.0.0/16", "gateway": "192.168.50.1", "table": 100},
            {"destination": "192.168.60.0/24", "scope": 253},
        ],
        "rules": [{"priority": 1000, "source": "192.168.50.0/24", "table": 100}],
        "neighbors": [{"destination": "192.168.50.9", "hardwareAddr": "02:00:00:00:00:09"}],
        "ethtool": {"features": {"tx-checksum-ip-generic": False, "rx-gro-list": True}},
    }
    kit.claim(plugin_store, POD.uid, ("nic1", config))

    recs = await attach_pod(ctx, POD, lab.path(pod))

    assert [r.phase for r in recs] == [AttachmentPhase.ATTACHED]
    assert lab.link("nic1", lab.node) is None
    link = lab.link("net1", pod)
    assert link is not None
    assert link["mtu"] == 1400
    assert link["address"] == "02:aa:bb:cc:dd:01"
    assert link["gso_max_size"] == 32000
    assert link["gro_max_size"] == 33000
    assert "UP" in link["flags"]
    addrs = ip_json("addr", "show", "dev", "net1", netns=pod)[0]["addr_info"]
    got = {f"{a['local']}/{a['prefixlen']}" for a in addrs if a["scope"] == "global"}
    assert got == {"192.168.50.2/24", "fd50::2/64"}
    main = ip_json("route", "show", "dev", "net1", netns=pod)
    assert {"dst": "10.77.0.0/16", "gateway": "192.168.50.1"}.items() <= next(
        r for r in main if r["dst"] == "10.77.0.0/16"
    ).items()
    link_scope = next(r for r in main if r["dst"] == "192.168.60.0/24")
    assert link_scope["scope"] == "link"
    t100 = ip_json("route", "show", "table", "100", netns=pod)
    assert [(r["dst"], r["gateway"]) for r in t100] == [("10.88.0.0/16", "192.168.50.1")]
    rules = ip_json("rule", "show", netns=pod)
    assert any(
        r.get("priority") == 1000 and r.get("src") == "192.168.50.0" and r.get("table") == "100"
        for r in rules
    ), rules
    neigh = ip_json("neigh", "show", "dev", "net1", netns=pod)
    assert [(n["dst"], n["lladdr"], n["state"]) for n in neigh if n["dst"] == "192.168.50.9"] == [
        ("192.168.50.9", "02:00:00:00:00:09", ["PERMANENT"])
    ]
    assert kit.sysctl(pod, "ipv4/conf/net1/forwarding") == "1"
    assert kit.sysctl(pod, "ipv6/conf/net1/forwarding") == "1"
    assert kit.sysctl(pod, "ipv4/conf/net1/arp_ignore") == "1"
    assert kit.sysctl(pod, "ipv4/conf/net1/arp_announce") == "2"
    features = netns_exec(pod, "ethtool", "-k", "net1").stdout
    assert "tx-checksum-ip-generic: off" in features
    assert "rx-gro-list: on" in features
    # The result describes the pod interface.
    res = recs[0].result
    assert res["name"] == "net1" and res["mac"] == "02:aa:bb:cc:dd:01" and res["mtu"] == 1400
    assert set(res["ips"]) == {"192.168.50.2/24", "fd50::2/64"}


async def test_host_addresses_and_routes_carry_over_and_ping_works(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nic2", node_cidr="10.20.0.2/24", fabric_cidr="10.20.0.1/24")
    ip("route", "add", "10.99.0.0/16", "via", "10.20.0.1", netns=lab.node)
    ip("route", "add", "10.98.0.0/16", "via", "10.20.0.1", "table", "42", netns=lab.node)
    ip("rule", "add", "from", "10.20.0.0/24", "table", "42", "prio", "500", netns=lab.node)
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nic2", {}))

    await attach_pod(ctx, POD, lab.path(pod))

    assert kit.pod_links(pod) == ["lo", "nic2"]
    addrs = ip_json("-4", "addr", "show", "dev", "nic2", netns=pod)[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs] == [("10.20.0.2", 24)]
    routes = ip_json("route", "show", "dev", "nic2", netns=pod)
    assert any(r["dst"] == "10.99.0.0/16" and r["gateway"] == "10.20.0.1" for r in routes)
    t42 = ip_json("route", "show", "table", "42", netns=pod)
    assert [r["dst"] for r in t42] == ["10.98.0.0/16"]
    carried = [r for r in kit.rules(pod) if r.get("table") == "42"]
    assert [(r["priority"], r["src"], r["srclen"]) for r in carried] == [(500, "10.20.0.0", 24)]
    netns_exec(pod, "ping", "-c", "1", "-W", "2", "10.20.0.1")


async def test_gso_gro_ipv4_sizes_reach_the_kernel(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    # iproute2 6.1 cannot show the IPv4 variants; the kernel refuses a GSO
    # size above tso_max_size, so a value within limits that differs from
    # the default, set together with the others, proves the request carried it.
    lab.add_nic("nic3")
    pod = lab.add_pod()
    iface = {"gsoMaxSize": 40000, "gsoIPv4MaxSize": 30000, "groIPv4MaxSize": 31000}
    kit.claim(plugin_store, POD.uid, ("nic3", {"interface": iface}))
    recs = await attach_pod(ctx, POD, lab.path(pod))
    link = lab.link("nic3", pod)
    assert link is not None and link["gso_max_size"] == 40000
    attrs = kit.raw_link_attrs(lab.path(pod), "nic3")
    gso4, gro4 = (struct.unpack("I", attrs[n])[0] for n in (63, 64))
    assert (gso4, gro4) == (30000, 31000)
    assert recs[0].original["gso_ipv4_max_size"] == 65536


async def test_second_attach_returns_the_same_result_without_changes(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nic4", node_cidr="10.40.0.2/24")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nic4", {"interface": {"name": "net9"}}))
    first = await attach_pod(ctx, POD, lab.path(pod))
    before = lab.links(pod)
    row = ctx.store.get_attachment("claim-1", "nic4")
    second = await attach_pod(ctx, POD, lab.path(pod))
    assert [r.result for r in second] == [r.result for r in first]
    assert second[0].result["name"] == "net9"
    assert ctx.store.get_attachment("claim-1", "nic4") == row  # not even rewritten
    assert lab.links(pod) == before


async def test_pod_without_claims_is_a_no_op(lab: NetLab, ctx: AgentContext) -> None:
    lab.add_nic("nic5")
    assert await attach_pod(ctx, PodRef("nobody"), "") == []
    assert lab.link("nic5", lab.node) is not None


async def test_several_devices_and_claims_attach_together(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nic6", node_cidr="10.60.0.2/24")
    lab.add_nic("nic7", node_cidr="10.70.0.2/24")
    lab.add_nic("nic8", node_cidr="10.80.0.2/24")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nic6", {}), ("nic7", {"interface": {"name": "net7"}}))
    kit.claim(plugin_store, POD.uid, ("nic8", {}), uid="claim-2", name="c2")
    recs = await attach_pod(ctx, POD, lab.path(pod))
    assert sorted(r.device for r in recs) == ["nic6", "nic7", "nic8"]
    assert sorted(kit.pod_links(pod)) == ["lo", "net7", "nic6", "nic8"]


async def test_attach_span_links_to_the_prepare_span(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ctx.tracer = provider.get_tracer("test")
    lab.add_nic("nict")
    pod = lab.add_pod()
    prepare_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    rec = kit.claim(plugin_store, POD.uid, ("nict", {"interface": {"name": "net1"}}))
    plugin_store.put_claim(
        dataclasses.replace(
            rec, trace_context={"traceparent": f"00-{prepare_trace}-00f067aa0ba902b7-01"}
        )
    )

    await attach_pod(ctx, POD, lab.path(pod))

    (span,) = [s for s in exporter.get_finished_spans() if s.name == "attach device"]
    assert [format(link.context.trace_id, "032x") for link in span.links] == [prepare_trace]
    attrs = dict(span.attributes or {})
    assert attrs["k8s.pod.uid"] == POD.uid and attrs["dranet.device"] == "nict"
    assert attrs["dranet.interface.name"] == "net1" and attrs["dranet.claim.uid"] == "claim-1"
