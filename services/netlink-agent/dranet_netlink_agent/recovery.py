"""Start-up reconcile: make the attachments table and the kernel agree again.

A crash can leave a row that is not ATTACHED. PENDING: the original state was
recorded but the move may not have happened (or happened just before the
crash) — the device is given back wherever it is and the row dropped. MOVED:
the device is in the pod, half-configured — rolled back to the node, row
dropped. ATTACHED rows are kept: the pod owns the device until its detach.
Rows of an earlier boot are already gone (the store drops them on open).
While running, `reap_forever` gives back devices of pods whose namespace
vanished without a StopPodSandbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from dranet.errors import DranetError
from dranet.store import AttachmentPhase
from dranet_netlink_agent.context import AgentContext, log
from dranet_netlink_agent.detach import Outcome, give_back, reap_orphans


@dataclass
class ReconcileReport:
    kept: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


async def reconcile(ctx: AgentContext) -> ReconcileReport:
    """Rolls back every unfinished attach; never touches ATTACHED rows."""
    report = ReconcileReport()
    async with ctx.lock:
        for rec in await ctx.rows():
            key = f"{rec.claim_uid}/{rec.device}"
            if rec.phase == AttachmentPhase.ATTACHED:
                report.kept.append(key)
                continue
            try:
                done = await give_back(ctx, rec)
            except DranetError as exc:
                log.error("start-up rollback of %s (%s) failed: %s", key, rec.phase, exc)
                report.failed.append(key)
                continue
            await ctx.delete(rec)
            (report.lost if done.outcome == Outcome.LOST else report.rolled_back).append(key)
            log.info("start-up: %s attach of %s rolled back (%s)", rec.phase, key, done.outcome)
    return report


async def reap_forever(ctx: AgentContext, interval: float) -> None:
    """Every `interval` seconds, gives back devices of pods whose netns vanished."""
    while True:
        await asyncio.sleep(interval)
        try:
            for done in await reap_orphans(ctx):
                log.info("pod netns gone without a stop: %s %s (%s)",
                         done.device, done.outcome.name.lower(), done.message)  # fmt: skip
        except DranetError as exc:
            log.warning("giving back devices of vanished pods: %s", exc)
