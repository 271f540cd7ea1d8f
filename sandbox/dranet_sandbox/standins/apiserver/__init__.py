"""An in-process Kubernetes API server stand-in (HTTP + JSON) for the kubelet plugin.

Serves exactly what the plugin uses, with the real server's paths, status
codes and `Status` bodies:

- core/v1: Nodes (get, list), Events (create, list);
- resource.k8s.io/v1: ResourceClaims (get, list, create, update, the
  `status` subresource by PUT and merge PATCH), DeviceClasses (get, list,
  create), ResourceSlices (list with fieldSelector / labelSelector, get,
  create with generateName, update, delete with preconditions,
  deletecollection - what the kubelet's wipe does).

It keeps resourceVersions (409 Conflict on a stale one), uids, generations,
refuses unknown field selectors (400), and validates ResourceSlices and
claim status the way the real server does (422 Invalid with
`details.causes`). No watch, no auth, no admission.

Where things are:

- `server`: `FakeApiServer` (HTTP serving, routing, seeding, inspection,
  `write_kubeconfig`) and `iter_slices`;
- `storage`: the objects, resourceVersions, conflicts and what each verb does;
- `validation` and `names`: what the real server validates;
- `selectors`: field and label selectors;
- `status`: error answers (`ApiError` and its Status bodies);
- `faults`: `fail_next` / `hang_next` fault injection;
- `kinds`: the kinds served.
"""

from dranet_sandbox.standins.apiserver.faults import Fault
from dranet_sandbox.standins.apiserver.kinds import KINDS, RESOURCE_GROUP, Kind, Obj
from dranet_sandbox.standins.apiserver.names import (
    dns_label_problem,
    dns_subdomain_problem,
    qualified_name_problem,
)
from dranet_sandbox.standins.apiserver.selectors import field_matcher, label_matcher
from dranet_sandbox.standins.apiserver.server import FakeApiServer, iter_slices
from dranet_sandbox.standins.apiserver.status import ApiError, Cause, conflict, invalid, not_found
from dranet_sandbox.standins.apiserver.storage import merge_patch
from dranet_sandbox.standins.apiserver.validation import (
    validate_claim_status,
    validate_device,
    validate_slice,
)

__all__ = [
    "KINDS",
    "RESOURCE_GROUP",
    "ApiError",
    "Cause",
    "FakeApiServer",
    "Fault",
    "Kind",
    "Obj",
    "conflict",
    "dns_label_problem",
    "dns_subdomain_problem",
    "field_matcher",
    "invalid",
    "iter_slices",
    "label_matcher",
    "merge_patch",
    "not_found",
    "qualified_name_problem",
    "validate_claim_status",
    "validate_device",
    "validate_slice",
]
