from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Device(_message.Message):
    __slots__ = ("name", "ifname", "ifindex", "mac", "permanent_mac", "mtu", "type", "state", "alias", "encapsulation", "ipv4", "ipv6", "pci_address", "pci_vendor", "pci_device", "pci_subsystem", "numa_node", "pcie_root", "sriov", "sriov_vfs", "is_sriov_vf", "virtual", "rdma", "rdma_device", "allocation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_MAC_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATION_FIELD_NUMBER: _ClassVar[int]
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    PCI_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PCI_VENDOR_FIELD_NUMBER: _ClassVar[int]
    PCI_DEVICE_FIELD_NUMBER: _ClassVar[int]
    PCI_SUBSYSTEM_FIELD_NUMBER: _ClassVar[int]
    NUMA_NODE_FIELD_NUMBER: _ClassVar[int]
    PCIE_ROOT_FIELD_NUMBER: _ClassVar[int]
    SRIOV_FIELD_NUMBER: _ClassVar[int]
    SRIOV_VFS_FIELD_NUMBER: _ClassVar[int]
    IS_SRIOV_VF_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_FIELD_NUMBER: _ClassVar[int]
    RDMA_FIELD_NUMBER: _ClassVar[int]
    RDMA_DEVICE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    ifname: str
    ifindex: int
    mac: str
    permanent_mac: str
    mtu: int
    type: str
    state: str
    alias: str
    encapsulation: str
    ipv4: _containers.RepeatedScalarFieldContainer[str]
    ipv6: _containers.RepeatedScalarFieldContainer[str]
    pci_address: str
    pci_vendor: str
    pci_device: str
    pci_subsystem: str
    numa_node: int
    pcie_root: str
    sriov: bool
    sriov_vfs: int
    is_sriov_vf: bool
    virtual: bool
    rdma: bool
    rdma_device: str
    allocation: Allocation
    def __init__(self, name: _Optional[str] = ..., ifname: _Optional[str] = ..., ifindex: _Optional[int] = ..., mac: _Optional[str] = ..., permanent_mac: _Optional[str] = ..., mtu: _Optional[int] = ..., type: _Optional[str] = ..., state: _Optional[str] = ..., alias: _Optional[str] = ..., encapsulation: _Optional[str] = ..., ipv4: _Optional[_Iterable[str]] = ..., ipv6: _Optional[_Iterable[str]] = ..., pci_address: _Optional[str] = ..., pci_vendor: _Optional[str] = ..., pci_device: _Optional[str] = ..., pci_subsystem: _Optional[str] = ..., numa_node: _Optional[int] = ..., pcie_root: _Optional[str] = ..., sriov: _Optional[bool] = ..., sriov_vfs: _Optional[int] = ..., is_sriov_vf: _Optional[bool] = ..., virtual: _Optional[bool] = ..., rdma: _Optional[bool] = ..., rdma_device: _Optional[str] = ..., allocation: _Optional[_Union[Allocation, _Mapping]] = ...) -> None: ...

class Allocation(_message.Message):
    __slots__ = ("pod", "claim_uid", "interface_name")
    POD_FIELD_NUMBER: _ClassVar[int]
    CLAIM_UID_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    pod: PodRef
    claim_uid: str
    interface_name: str
    def __init__(self, pod: _Optional[_Union[PodRef, _Mapping]] = ..., claim_uid: _Optional[str] = ..., interface_name: _Optional[str] = ...) -> None: ...

class PodRef(_message.Message):
    __slots__ = ("uid", "namespace", "name")
    UID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    uid: str
    namespace: str
    name: str
    def __init__(self, uid: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class WatchDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceEvent(_message.Message):
    __slots__ = ("kind", "devices")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[DeviceEvent.Kind]
        SNAPSHOT: _ClassVar[DeviceEvent.Kind]
        ADDED: _ClassVar[DeviceEvent.Kind]
        MODIFIED: _ClassVar[DeviceEvent.Kind]
        REMOVED: _ClassVar[DeviceEvent.Kind]
    KIND_UNSPECIFIED: DeviceEvent.Kind
    SNAPSHOT: DeviceEvent.Kind
    ADDED: DeviceEvent.Kind
    MODIFIED: DeviceEvent.Kind
    REMOVED: DeviceEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    kind: DeviceEvent.Kind
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, kind: _Optional[_Union[DeviceEvent.Kind, str]] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class AttachPodRequest(_message.Message):
    __slots__ = ("pod", "netns_path")
    POD_FIELD_NUMBER: _ClassVar[int]
    NETNS_PATH_FIELD_NUMBER: _ClassVar[int]
    pod: PodRef
    netns_path: str
    def __init__(self, pod: _Optional[_Union[PodRef, _Mapping]] = ..., netns_path: _Optional[str] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("type", "status", "reason", "message")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: str
    status: str
    reason: str
    message: str
    def __init__(self, type: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class InterfaceResult(_message.Message):
    __slots__ = ("claim_uid", "request", "pool", "device", "interface_name", "mac", "ips", "mtu", "conditions")
    CLAIM_UID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    IPS_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    claim_uid: str
    request: str
    pool: str
    device: str
    interface_name: str
    mac: str
    ips: _containers.RepeatedScalarFieldContainer[str]
    mtu: int
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, claim_uid: _Optional[str] = ..., request: _Optional[str] = ..., pool: _Optional[str] = ..., device: _Optional[str] = ..., interface_name: _Optional[str] = ..., mac: _Optional[str] = ..., ips: _Optional[_Iterable[str]] = ..., mtu: _Optional[int] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class AttachPodResponse(_message.Message):
    __slots__ = ("interfaces",)
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    interfaces: _containers.RepeatedCompositeFieldContainer[InterfaceResult]
    def __init__(self, interfaces: _Optional[_Iterable[_Union[InterfaceResult, _Mapping]]] = ...) -> None: ...

class DetachPodRequest(_message.Message):
    __slots__ = ("pod", "netns_path")
    POD_FIELD_NUMBER: _ClassVar[int]
    NETNS_PATH_FIELD_NUMBER: _ClassVar[int]
    pod: PodRef
    netns_path: str
    def __init__(self, pod: _Optional[_Union[PodRef, _Mapping]] = ..., netns_path: _Optional[str] = ...) -> None: ...

class DetachedDevice(_message.Message):
    __slots__ = ("claim_uid", "device", "outcome", "message")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[DetachedDevice.Outcome]
        RESTORED: _ClassVar[DetachedDevice.Outcome]
        LOST: _ClassVar[DetachedDevice.Outcome]
    OUTCOME_UNSPECIFIED: DetachedDevice.Outcome
    RESTORED: DetachedDevice.Outcome
    LOST: DetachedDevice.Outcome
    CLAIM_UID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    claim_uid: str
    device: str
    outcome: DetachedDevice.Outcome
    message: str
    def __init__(self, claim_uid: _Optional[str] = ..., device: _Optional[str] = ..., outcome: _Optional[_Union[DetachedDevice.Outcome, str]] = ..., message: _Optional[str] = ...) -> None: ...

class DetachPodResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DetachedDevice]
    def __init__(self, devices: _Optional[_Iterable[_Union[DetachedDevice, _Mapping]]] = ...) -> None: ...

class ReleaseClaimRequest(_message.Message):
    __slots__ = ("claim_uid",)
    CLAIM_UID_FIELD_NUMBER: _ClassVar[int]
    claim_uid: str
    def __init__(self, claim_uid: _Optional[str] = ...) -> None: ...

class ReleaseClaimResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DetachedDevice]
    def __init__(self, devices: _Optional[_Iterable[_Union[DetachedDevice, _Mapping]]] = ...) -> None: ...

class Attachment(_message.Message):
    __slots__ = ("pod", "netns_path", "interface")
    POD_FIELD_NUMBER: _ClassVar[int]
    NETNS_PATH_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    pod: PodRef
    netns_path: str
    interface: InterfaceResult
    def __init__(self, pod: _Optional[_Union[PodRef, _Mapping]] = ..., netns_path: _Optional[str] = ..., interface: _Optional[_Union[InterfaceResult, _Mapping]] = ...) -> None: ...

class ListAttachmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAttachmentsResponse(_message.Message):
    __slots__ = ("attachments",)
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    def __init__(self, attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ...) -> None: ...

class WatchAttachmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttachmentEvent(_message.Message):
    __slots__ = ("kind", "attachments")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[AttachmentEvent.Kind]
        SNAPSHOT: _ClassVar[AttachmentEvent.Kind]
        ATTACHED: _ClassVar[AttachmentEvent.Kind]
        DETACHED: _ClassVar[AttachmentEvent.Kind]
    KIND_UNSPECIFIED: AttachmentEvent.Kind
    SNAPSHOT: AttachmentEvent.Kind
    ATTACHED: AttachmentEvent.Kind
    DETACHED: AttachmentEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    kind: AttachmentEvent.Kind
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    def __init__(self, kind: _Optional[_Union[AttachmentEvent.Kind, str]] = ..., attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ...) -> None: ...
