"""The NRI and ttrpc wire contracts: names and numbers exactly as upstream.

Expected values come from /work/shared/reference/nri.md (§1.3, §3.1, §3.2,
checked against containerd/nri pkg/api/api.proto and containerd/ttrpc
request.proto); the actual ones are read from our generated descriptors, so a
renamed service, method, message or field number fails here.
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor

from dranet.nri import api_pb2, ttrpc_pb2

RUNTIME_METHODS = {
    "RegisterPlugin": ("RegisterPluginRequest", "Empty"),
    "UpdateContainers": ("UpdateContainersRequest", "UpdateContainersResponse"),
}
PLUGIN_METHODS = {
    "Configure": ("ConfigureRequest", "ConfigureResponse"),
    "Synchronize": ("SynchronizeRequest", "SynchronizeResponse"),
    "Shutdown": ("Empty", "Empty"),
    "CreateContainer": ("CreateContainerRequest", "CreateContainerResponse"),
    "UpdateContainer": ("UpdateContainerRequest", "UpdateContainerResponse"),
    "StopContainer": ("StopContainerRequest", "StopContainerResponse"),
    "StateChange": ("StateChangeEvent", "Empty"),
    "UpdatePodSandbox": ("UpdatePodSandboxRequest", "UpdatePodSandboxResponse"),
    "ValidateContainerAdjustment": (
        "ValidateContainerAdjustmentRequest",
        "ValidateContainerAdjustmentResponse",
    ),
    **{
        name: (f"{name}Request", f"{name}Response")
        for name in (
            "RunPodSandbox",
            "PostUpdatePodSandbox",
            "StopPodSandbox",
            "RemovePodSandbox",
            "PostCreateContainer",
            "StartContainer",
            "PostStartContainer",
            "PostUpdateContainer",
            "RemoveContainer",
        )
    },
}


@pytest.mark.parametrize(
    ("service", "methods"),
    [("Runtime", RUNTIME_METHODS), ("Plugin", PLUGIN_METHODS)],
)
def test_service_and_method_names(service: str, methods: dict[str, tuple[str, str]]) -> None:
    desc = api_pb2.DESCRIPTOR.services_by_name[service]
    assert desc.full_name == f"nri.pkg.api.v1alpha1.{service}"
    actual = {
        m.name: (m.input_type.name, m.output_type.name) for m in desc.methods
    }  # fmt: skip
    assert actual == methods
    for m in desc.methods:
        assert not m.client_streaming and not m.server_streaming


def _numbers(desc: Descriptor) -> dict[str, int]:
    return {f.name: f.number for f in desc.fields}


def test_ttrpc_envelope_field_numbers() -> None:
    assert ttrpc_pb2.DESCRIPTOR.package == "ttrpc"
    assert _numbers(ttrpc_pb2.Request.DESCRIPTOR) == {
        "service": 1, "method": 2, "payload": 3, "timeout_nano": 4, "metadata": 5,
    }  # fmt: skip
    assert _numbers(ttrpc_pb2.Response.DESCRIPTOR) == {"status": 1, "payload": 2}
    assert _numbers(ttrpc_pb2.KeyValue.DESCRIPTOR) == {"key": 1, "value": 2}
    # Wire-compatible with google.rpc.Status.
    status = ttrpc_pb2.Status.DESCRIPTOR
    assert _numbers(status) == {"code": 1, "message": 2, "details": 3}
    details = status.fields_by_name["details"].message_type
    assert details is not None
    assert details.full_name == "google.protobuf.Any"
    assert ttrpc_pb2.Response.DESCRIPTOR.fields_by_name["status"].message_type is status


@pytest.mark.parametrize(
    ("message", "numbers"),
    [
        ("RegisterPluginRequest", {"plugin_name": 1, "plugin_idx": 2, "NRI_version": 3}),
        (
            "ConfigureRequest",
            {
                "config": 1, "runtime_name": 2, "runtime_version": 3,
                "registration_timeout": 4, "request_timeout": 5, "NRI_version": 6,
            },
        ),
        ("ConfigureResponse", {"events": 2}),
        ("SynchronizeRequest", {"pods": 1, "containers": 2, "more": 3}),
        ("SynchronizeResponse", {"update": 1, "more": 2}),
        ("StateChangeEvent", {"event": 1, "pod": 2, "container": 3}),
        ("RunPodSandboxRequest", {"pod": 1}),
        ("StopPodSandboxRequest", {"pod": 1}),
        ("RemovePodSandboxRequest", {"pod": 1}),
        (
            "PodSandbox",
            {
                "id": 1, "name": 2, "uid": 3, "namespace": 4, "labels": 5, "annotations": 6,
                "runtime_handler": 7, "linux": 8, "pid": 9, "ips": 10,
            },
        ),
        (
            "LinuxPodSandbox",
            {
                "pod_overhead": 1, "pod_resources": 2, "cgroup_parent": 3, "cgroups_path": 4,
                "namespaces": 5, "resources": 6,
            },
        ),
        ("LinuxNamespace", {"type": 1, "path": 2}),
        ("CreateContainerResponse", {"adjust": 1, "update": 2, "evict": 3}),
    ],
)  # fmt: skip
def test_nri_message_field_numbers(message: str, numbers: dict[str, int]) -> None:
    assert _numbers(api_pb2.DESCRIPTOR.message_types_by_name[message]) == numbers


def test_container_fields_and_event_values() -> None:
    container = _numbers(api_pb2.Container.DESCRIPTOR)
    assert container["state"] == 4 and container["linux"] == 11 and container["image"] == 22
    assert len(container) == 22
    events = {v.name: v.number for v in api_pb2.DESCRIPTOR.enum_types_by_name["Event"].values}
    assert events["RUN_POD_SANDBOX"] == 1
    assert events["STOP_POD_SANDBOX"] == 2
    assert events["REMOVE_POD_SANDBOX"] == 3
    assert events["VALIDATE_CONTAINER_ADJUSTMENT"] == 14
    assert events["LAST"] == 15
    adjust = _numbers(api_pb2.ContainerAdjustment.DESCRIPTOR)
    assert 1 not in adjust.values() and adjust["annotations"] == 2 and adjust["args"] == 9
