"""The kinds the API server stand-in serves: their plural, group, scope and field labels.

Also the JSON object type (`Obj`) every module of the stand-in passes around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

RESOURCE_GROUP = "resource.k8s.io"


@dataclass(frozen=True)
class Kind:
    plural: str
    kind: str
    group: str  # "" = core
    namespaced: bool
    status_subresource: bool = False
    fields: tuple[str, ...] = ("metadata.name", "metadata.namespace")

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS = {
    k.plural: k
    for k in (
        Kind("nodes", "Node", "", False),
        Kind("events", "Event", "", True),
        Kind("resourceclaims", "ResourceClaim", RESOURCE_GROUP, True, status_subresource=True),
        Kind("deviceclasses", "DeviceClass", RESOURCE_GROUP, False),
        Kind(
            "resourceslices",
            "ResourceSlice",
            RESOURCE_GROUP,
            False,
            fields=("metadata.name", "spec.nodeName", "spec.driver", "spec.pool.name"),
        ),
    )
}
