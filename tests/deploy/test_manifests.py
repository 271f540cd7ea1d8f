"""The deploy kustomization, rendered by a real kubectl, keeps least privilege.

Container by container: what it may do (capabilities), what it can reach
(volumes, host paths) and who holds the API token.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dranet_sandbox import debfetch

REPO = Path(__file__).resolve().parents[2]
KUBECTL_CACHE = debfetch.DEFAULT_CACHE.parent / "dranet-kubectl"

AGENT, PLUGIN, HOOK = "netlink-agent", "kubelet-plugin", "nri-hook"
EXPECTED_MOUNTS = {
    AGENT: {"sockets", "state", "netns", "proc-sys-net"},
    PLUGIN: {"sockets", "state", "kubelet-plugins", "kubelet-registry", "api-token"},
    HOOK: {"sockets", "nri", "state"},
}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    try:
        root = debfetch.fetch(KUBECTL_CACHE, (debfetch.Wanted("kubectl", "trixie"),))
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but kubectl could not be fetched: {exc}")
        pytest.skip(f"kubectl could not be fetched: {exc}")
    out = subprocess.run(
        [str(root / "usr/bin/kubectl"), "kustomize", str(REPO / "deploy")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec = _one(docs, "DaemonSet")["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def test_pod_level_settings(rendered: list[dict[str, Any]]) -> None:
    spec = _one(rendered, "DaemonSet")["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["priorityClassName"] == "system-node-critical"
    assert not spec.get("hostPID") and not spec.get("hostIPC")
    assert set(_containers(rendered)) == {AGENT, PLUGIN, HOOK}
    assert not spec.get("initContainers")


def test_every_container_drops_all_and_is_read_only(rendered: list[dict[str, Any]]) -> None:
    for name, container in _containers(rendered).items():
        sc = container["securityContext"]
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc.get("privileged") is False, name
        assert sc.get("allowPrivilegeEscalation") is False, name


def test_only_the_agent_has_capabilities(rendered: list[dict[str, Any]]) -> None:
    added = {n: set(c["securityContext"]["capabilities"].get("add", [])) for n, c in
             _containers(rendered).items()}  # fmt: skip
    assert added == {AGENT: {"NET_ADMIN", "SYS_ADMIN"}, PLUGIN: set(), HOOK: set()}


def test_each_container_mounts_exactly_what_it_needs(rendered: list[dict[str, Any]]) -> None:
    mounts = {n: {m["name"] for m in c["volumeMounts"]} for n, c in
              _containers(rendered).items()}  # fmt: skip
    assert mounts == EXPECTED_MOUNTS
    agent = _containers(rendered)[AGENT]
    netns = next(m for m in agent["volumeMounts"] if m["name"] == "netns")
    assert netns["mountPropagation"] == "HostToContainer"
    # The hook only reads the store (a fallback while the agent is unreachable).
    hook = _containers(rendered)[HOOK]
    state = next(m for m in hook["volumeMounts"] if m["name"] == "state")
    assert state["readOnly"] is True
    env = {e["name"]: e.get("value") for e in hook["env"]}
    assert env["DRANET_STATE_DB"].startswith(state["mountPath"] + "/")


def test_only_the_plugin_holds_an_api_token(rendered: list[dict[str, Any]]) -> None:
    spec = _one(rendered, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    token_volumes = {
        name for name, v in volumes.items()
        if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))
    }  # fmt: skip
    assert token_volumes == {"api-token"}
    holders = {n for n, mounts in EXPECTED_MOUNTS.items() if "api-token" in mounts}
    assert holders == {PLUGIN}
    assert volumes["sockets"]["emptyDir"]["medium"] == "Memory"
    host_paths = {v["hostPath"]["path"] for v in volumes.values() if "hostPath" in v}
    assert host_paths == {
        "/var/lib/dranet", "/var/lib/kubelet/plugins", "/var/lib/kubelet/plugins_registry",
        "/var/run/netns", "/proc/sys/net", "/var/run/nri",
    }  # fmt: skip


def test_probes_resources_and_telemetry_wiring(rendered: list[dict[str, Any]]) -> None:
    for name, container in _containers(rendered).items():
        probe = container["readinessProbe"]["exec"]["command"]
        assert probe[:3] == ["dranet", "health", "--socket"], name
        assert container["resources"]["requests"]["memory"], name
        assert container["resources"]["limits"]["memory"], name
        env = {e["name"]: e for e in container["env"]}
        assert env["OTEL_SERVICE_NAME"]["value"] == f"dranet-{name}"
        assert "k8s.node.name=" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]


def test_cluster_role_is_minimal(rendered: list[dict[str, Any]]) -> None:
    rules = {
        (group, resource): frozenset(rule["verbs"])
        for rule in _one(rendered, "ClusterRole")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("resource.k8s.io", "resourceslices"): frozenset(
            {"get", "list", "watch", "create", "update", "delete"}
        ),
        ("resource.k8s.io", "resourceclaims"): frozenset({"get"}),
        ("resource.k8s.io", "resourceclaims/status"): frozenset({"update", "patch"}),
        ("resource.k8s.io", "resourceclaims/driver"): frozenset(
            {"associated-node:update", "associated-node:patch"}
        ),
        ("", "nodes"): frozenset({"get"}),
        ("", "events"): frozenset({"create", "patch"}),
        ("events.k8s.io", "events"): frozenset({"create", "patch"}),
    }
    [driver_rule] = [
        r
        for r in _one(rendered, "ClusterRole")["rules"]
        if r["resources"] == ["resourceclaims/driver"]
    ]
    assert driver_rule["resourceNames"] == ["dra.net"]
    assert all(
        "resourceNames" not in r or r is driver_rule for r in _one(rendered, "ClusterRole")["rules"]
    )
    account = _one(rendered, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_device_class_selects_our_driver(rendered: list[dict[str, Any]]) -> None:
    cls = _one(rendered, "DeviceClass")
    assert cls["spec"]["selectors"] == [{"cel": {"expression": 'device.driver == "dra.net"'}}]
