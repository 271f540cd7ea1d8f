"""A kubelet stand-in: the plugin watcher and the DRA client of a 1.34+ kubelet.

It does what the kubelet does with a DRA driver, over the real wire:

- watches `<root>/plugins_registry` (recursively, dot-files ignored) for unix
  sockets; a new or re-created socket is registered, a removed one
  deregistered (the kubelet uses inotify; polling is enough here);
- registration: `GetInfo` with a 1 s deadline, checks type "DRAPlugin", the
  name, the supported services (the plugin's first entry this kubelet knows
  wins) and that the endpoint is a socket, connects to it, then
  `NotifyRegistrationStatus` (true, or false with the error). Failures are
  retried with exponential backoff while the socket stays the same;
- `prepare(claims)` / `unprepare(claims)` call the chosen DRA service version
  (or a forced one) with the kubelet's 45 s deadline and enforce the kubelet's
  response rules: one entry per requested claim UID, no unknown UID.
  Violations raise `ProtocolError`; an RPC failure raises `PeerError`.

It deliberately does not import the plugin's code: it checks the plugin
against the contract, not against itself.

Where things are: `registration` (the watcher and the handshake,
`PluginWatcher`), `checks` (the pure rules applied to the plugin's answers),
`dra` (`KubeletStandin` = `PluginWatcher` + the DRA calls, and the claim and
result types).
"""

from dranet_sandbox.standins.kubelet.checks import (
    DRA_PLUGIN_TYPE,
    KNOWN_SERVICES,
    check_plugin_info,
    check_response_uids,
    choose_service,
)
from dranet_sandbox.standins.kubelet.dra import (
    CALL_TIMEOUT,
    Claim,
    ClaimLike,
    ClaimResult,
    KubeletStandin,
    PreparedDevice,
)
from dranet_sandbox.standins.kubelet.registration import (
    CONNECT_TIMEOUT,
    GET_INFO_TIMEOUT,
    NOTIFY_TIMEOUT,
    PluginWatcher,
    RegisteredPlugin,
    RegistrationAttempt,
    scan_sockets,
)

__all__ = [
    "CALL_TIMEOUT",
    "CONNECT_TIMEOUT",
    "DRA_PLUGIN_TYPE",
    "GET_INFO_TIMEOUT",
    "KNOWN_SERVICES",
    "NOTIFY_TIMEOUT",
    "Claim",
    "ClaimLike",
    "ClaimResult",
    "KubeletStandin",
    "PluginWatcher",
    "PreparedDevice",
    "RegisteredPlugin",
    "RegistrationAttempt",
    "check_plugin_info",
    "check_response_uids",
    "choose_service",
    "scan_sockets",
]
