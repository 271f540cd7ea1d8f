"""The kubelet wire contracts: names and numbers exactly as upstream k8s.io/kubelet has them.

Expected values come from /work/shared/reference/kubelet-dra.md (copied from
upstream api.proto files); the actual ones are read from our generated
descriptors and stubs, so a renamed package, method or field number fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

from dranet.kubelet.dra.v1 import api_pb2 as v1_pb2
from dranet.kubelet.dra.v1 import api_pb2_grpc as v1_grpc
from dranet.kubelet.dra.v1beta1 import api_pb2 as v1beta1_pb2
from dranet.kubelet.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc
from dranet.kubelet.drahealth.v1alpha1 import api_pb2 as health_pb2
from dranet.kubelet.drahealth.v1alpha1 import api_pb2_grpc as health_grpc
from dranet.kubelet.pluginregistration.v1 import api_pb2 as reg_pb2
from dranet.kubelet.pluginregistration.v1 import api_pb2_grpc as reg_grpc

SERVICES: list[tuple[FileDescriptor, str, str, dict[str, tuple[str, str, bool]]]] = [
    (
        reg_pb2.DESCRIPTOR,
        "Registration",
        "pluginregistration.Registration",
        {
            "GetInfo": ("InfoRequest", "PluginInfo", False),
            "NotifyRegistrationStatus": ("RegistrationStatus", "RegistrationStatusResponse", False),
        },
    ),
    *(
        (
            pb.DESCRIPTOR,
            "DRAPlugin",
            f"k8s.io.kubelet.pkg.apis.dra.{version}.DRAPlugin",
            {
                "NodePrepareResources": (
                    "NodePrepareResourcesRequest",
                    "NodePrepareResourcesResponse",
                    False,
                ),
                "NodeUnprepareResources": (
                    "NodeUnprepareResourcesRequest",
                    "NodeUnprepareResourcesResponse",
                    False,
                ),
            },
        )
        for version, pb in (("v1", v1_pb2), ("v1beta1", v1beta1_pb2))
    ),
    (
        health_pb2.DESCRIPTOR,
        "DRAResourceHealth",
        "v1alpha1.DRAResourceHealth",
        {"NodeWatchResources": ("NodeWatchResourcesRequest", "NodeWatchResourcesResponse", True)},
    ),
]


@pytest.mark.parametrize(
    ("file", "service", "full_name", "methods"), SERVICES, ids=[s[2] for s in SERVICES]
)
def test_service_and_method_names(
    file: FileDescriptor, service: str, full_name: str, methods: dict[str, tuple[str, str, bool]]
) -> None:
    described = file.services_by_name[service]
    assert described.full_name == full_name
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    assert proto.syntax == "proto3"
    assert {m.name for m in described.methods} == set(methods)
    package = full_name.rsplit(".", 1)[0]
    for method in described.methods:
        request, response, server_streaming = methods[method.name]
        assert method.input_type.full_name == f"{package}.{request}"
        assert method.output_type.full_name == f"{package}.{response}"
        assert method.client_streaming is False
        assert method.server_streaming is server_streaming


class _RecordingChannel:
    """Captures the method paths a generated stub binds to."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def _bind(self, path: str, *args: Any, **kwargs: Any) -> None:
        self.paths.append(path)

    unary_unary = unary_stream = stream_unary = stream_stream = _bind


@pytest.mark.parametrize(
    ("stub", "paths"),
    [
        (
            reg_grpc.RegistrationStub,
            [
                "/pluginregistration.Registration/GetInfo",
                "/pluginregistration.Registration/NotifyRegistrationStatus",
            ],
        ),
        (
            v1_grpc.DRAPluginStub,
            [
                "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources",
                "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodeUnprepareResources",
            ],
        ),
        (
            v1beta1_grpc.DRAPluginStub,
            [
                "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodePrepareResources",
                "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodeUnprepareResources",
            ],
        ),
        (health_grpc.DRAResourceHealthStub, ["/v1alpha1.DRAResourceHealth/NodeWatchResources"]),
    ],
)
def test_generated_stubs_call_the_upstream_method_paths(stub: Any, paths: list[str]) -> None:
    channel = _RecordingChannel()
    stub(channel)
    assert sorted(channel.paths) == sorted(paths)


def _fields(message: Descriptor) -> dict[str, tuple[int, int, bool]]:
    """name -> (number, type, repeated)."""
    return {f.name: (f.number, f.type, f.is_repeated) for f in message.fields}


S, B, I64, MSG, ENUM = (
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_MESSAGE,
    FieldDescriptor.TYPE_ENUM,
)


def test_registration_messages() -> None:
    messages = reg_pb2.DESCRIPTOR.message_types_by_name
    assert _fields(messages["PluginInfo"]) == {
        "type": (1, S, False),
        "name": (2, S, False),
        "endpoint": (3, S, False),
        "supported_versions": (4, S, True),
    }
    assert _fields(messages["RegistrationStatus"]) == {
        "plugin_registered": (1, B, False),
        "error": (2, S, False),
    }
    assert _fields(messages["InfoRequest"]) == {}
    assert _fields(messages["RegistrationStatusResponse"]) == {}


@pytest.mark.parametrize("pb", [v1_pb2, v1beta1_pb2], ids=["v1", "v1beta1"])
def test_dra_messages(pb: Any) -> None:
    messages = pb.DESCRIPTOR.message_types_by_name
    assert _fields(messages["Claim"]) == {
        "namespace": (1, S, False),
        "uid": (2, S, False),
        "name": (3, S, False),
    }
    device = {
        "request_names": (1, S, True),
        "pool_name": (2, S, False),
        "device_name": (3, S, False),
        "cdi_device_ids": (4, S, True),
    }
    if pb is v1_pb2:
        device["share_id"] = (5, S, False)
    assert _fields(messages["Device"]) == device
    assert _fields(messages["NodePrepareResourceResponse"]) == {
        "devices": (1, MSG, True),
        "error": (2, S, False),
    }
    assert _fields(messages["NodeUnprepareResourceResponse"]) == {"error": (1, S, False)}
    for request in ("NodePrepareResourcesRequest", "NodeUnprepareResourcesRequest"):
        assert _fields(messages[request]) == {"claims": (1, MSG, True)}
        assert messages[request].fields_by_name["claims"].message_type.name == "Claim"
    for response, value in (
        ("NodePrepareResourcesResponse", "NodePrepareResourceResponse"),
        ("NodeUnprepareResourcesResponse", "NodeUnprepareResourceResponse"),
    ):
        claims = messages[response].fields_by_name["claims"]
        assert claims.number == 1
        entry = claims.message_type
        assert entry.GetOptions().map_entry  # map<string, ...> keyed by claim UID
        assert entry.fields_by_name["key"].type == S
        assert entry.fields_by_name["value"].message_type.name == value


def test_v1_share_id_has_explicit_presence() -> None:
    share_id = v1_pb2.Device.DESCRIPTOR.fields_by_name["share_id"]
    assert share_id.has_presence
    assert share_id.containing_oneof is not None  # proto3 `optional` = synthetic oneof
    assert "share_id" not in v1beta1_pb2.Device.DESCRIPTOR.fields_by_name


def test_health_messages_and_enum() -> None:
    messages = health_pb2.DESCRIPTOR.message_types_by_name
    assert _fields(messages["DeviceIdentifier"]) == {
        "pool_name": (1, S, False),
        "device_name": (2, S, False),
    }
    assert _fields(messages["DeviceHealth"]) == {
        "device": (1, MSG, False),
        "health": (2, ENUM, False),
        "last_updated_time": (3, I64, False),
        "health_check_timeout_seconds": (4, I64, False),
        "message": (5, S, False),
    }
    assert _fields(messages["NodeWatchResourcesResponse"]) == {"devices": (1, MSG, True)}
    assert _fields(messages["NodeWatchResourcesRequest"]) == {}
    status = health_pb2.DESCRIPTOR.enum_types_by_name["HealthStatus"]
    assert status.full_name == "v1alpha1.HealthStatus"
    assert {v.name: v.number for v in status.values} == {"UNKNOWN": 0, "HEALTHY": 1, "UNHEALTHY": 2}


def test_claim_bytes_match_the_protobuf_encoding() -> None:
    # Tag bytes are (field << 3) | wire type 2 (length-delimited): 0x0a, 0x12, 0x1a.
    claim = v1_pb2.Claim(namespace="ns", uid="u1", name="c")
    assert claim.SerializeToString() == b"\x0a\x02ns\x12\x02u1\x1a\x01c"
    # The same bytes decode as v1beta1: the two versions share the wire format.
    assert v1beta1_pb2.Claim.FromString(claim.SerializeToString()).uid == "u1"
