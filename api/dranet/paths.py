"""Well-known paths, defined once for every service and the CLI.

The agent's socket sits in a directory of its own inside the pod's shared
`emptyDir`: the agent creates that directory with mode 0750, which it could
not enforce on the emptyDir mount point itself.
"""

from __future__ import annotations

DEFAULT_AGENT_SOCKET = "/run/dranet/agent/agent.sock"
DEFAULT_NRI_HOOK_HEALTH_SOCKET = "/run/dranet/nri-hook/health.sock"
