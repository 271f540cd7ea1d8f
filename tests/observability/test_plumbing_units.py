"""Pure pieces of the observability plumbing, without processes or sockets."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dranet.metrics import Metrics
from dranet.telemetry import build_resource, service_resource
from dranet_kubelet_plugin.registration import RegistrationState, RegistrationStatus
from dranet_nri_hook.main import RuntimeLink


def test_service_resource_takes_the_downward_api_names() -> None:
    env = {"POD_NAME": "dranet-x1", "POD_NAMESPACE": "kube-system", "POD_UID": "", "HOME": "/"}
    assert service_resource("node-a", "nri-hook", env) == {
        "k8s.container.name": "nri-hook",
        "k8s.node.name": "node-a",
        "k8s.pod.name": "dranet-x1",
        "k8s.namespace.name": "kube-system",
    }
    assert service_resource("", "netlink-agent", {}) == {"k8s.container.name": "netlink-agent"}


def test_operator_attributes_win_over_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.node.name=from-env")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    attrs = build_resource("dranet-x", {"k8s.node.name": "from-code"}).attributes
    assert attrs["k8s.node.name"] == "from-env" and attrs["service.name"] == "renamed"


def test_store_rows_are_read_at_scrape_time_and_a_failure_skips_them() -> None:
    metrics = Metrics(CollectorRegistry())
    counts = {"claims": 2, "attachments": 1}
    broken = False

    def read() -> dict[str, int]:
        if broken:
            raise RuntimeError("store closed")
        return counts

    metrics.watch_store(read)
    text = generate_latest(metrics.registry).decode()
    assert 'dranet_store_rows{table="claims"} 2.0' in text
    counts["claims"] = 5
    assert 'dranet_store_rows{table="claims"} 5.0' in generate_latest(metrics.registry).decode()
    broken = True
    assert "dranet_store_rows{" not in generate_latest(metrics.registry).decode()


def test_registration_listeners_follow_every_notification() -> None:
    state = RegistrationState()
    seen: list[bool] = []
    state.subscribe(seen.append)
    state.record(RegistrationStatus(registered=True))
    state.record(RegistrationStatus(registered=False, error="bad endpoint"))
    assert seen == [False, True, False]


def test_runtime_link_counts_reconnects_not_the_first_registration() -> None:
    metrics = Metrics(CollectorRegistry())
    link = RuntimeLink(metrics, None)
    for connected in (True, False, True, False, True):
        link(connected)
    registry = metrics.registry
    assert registry.get_sample_value("dranet_nri_reconnects_total") == 2
    assert registry.get_sample_value("dranet_nri_connected") == 1
