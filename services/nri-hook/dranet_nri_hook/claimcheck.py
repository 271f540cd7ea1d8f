"""Does a pod have prepared claims? Asked of the claim-state store, read-only.

Only a fallback for when the netlink agent cannot be reached: the agent is
the one that knows, but while it is down or stuck every pod on the node would
otherwise fail to start, CNI and system pods included, though most have no
dranet claim. The kubelet plugin records a claim before it answers
NodePrepareResources, so before RunPodSandbox: no row means no devices to move.
Any doubt (no store, unreadable, too slow) answers "unknown" and the pod fails.
"""

from __future__ import annotations

import asyncio
import logging

from dranet.errors import StoreError
from dranet.store import Role, Store

log = logging.getLogger(__name__)

# The agent call used up to 75% of the runtime's 2 s budget (handlers.BUDGET_SHARE):
# the store read must fit in what is left, with room for the reply.
READ_TIMEOUT = 0.25


def read_pod_claims(path: str, pod_uid: str) -> list[str]:
    """Uids of the claims prepared for the pod (blocking). Opens the store per
    call: the fallback is rare, and a fresh open follows a re-created file."""
    busy_ms = int(READ_TIMEOUT * 1000)
    with Store(path, role=Role.READER, busy_timeout_ms=busy_ms) as store:
        return [claim.uid for claim in store.claims_for_pod(pod_uid)]


async def pod_has_no_claims(path: str, pod_uid: str, timeout: float = READ_TIMEOUT) -> bool:
    """True only when the store was read and holds no claim for the pod.

    False when it has claims, is disabled (`path` empty), or cannot be read
    in time; the reason is logged."""
    if not path:
        return False
    try:
        async with asyncio.timeout(timeout):
            claims = await asyncio.to_thread(read_pod_claims, path, pod_uid)
    except TimeoutError:
        log.warning("claim-state store %s not read within %gs", path, timeout)
        return False
    except StoreError as exc:
        log.warning("claim-state store unreadable: %s", exc)
        return False
    except Exception:  # a bug here must not hide the agent's error, which says why
        log.exception("reading claim-state store %s failed", path)
        return False
    if claims:
        log.info("pod uid %s has prepared claims: %s", pod_uid, ", ".join(claims))
    return not claims
