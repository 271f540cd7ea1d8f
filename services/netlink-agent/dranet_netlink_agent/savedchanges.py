"""Pod-side changes saved to the attachment row the moment configure_pod makes them.

`SavedPodChanges` is the PodChanges that configure_pod fills in (rules
added, a VRF created); each addition calls `on_change`, and `saver` makes
that write the row at once, so start-up recovery of a crash between two
configure steps knows what to remove from the pod.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dranet.store import AttachmentRecord
from dranet_netlink_agent.configure import PodChanges
from dranet_netlink_agent.context import AgentContext


class _SavingRules(list[dict[str, Any]]):
    """A rules list that reports each addition (configure_pod extends it per step)."""

    def __init__(self, changed: Callable[[], None]) -> None:
        super().__init__()
        self._changed = changed

    def append(self, item: dict[str, Any]) -> None:
        super().append(item)
        self._changed()

    def extend(self, items: Any) -> None:
        super().extend(items)
        self._changed()


@dataclass
class SavedPodChanges(PodChanges):
    """PodChanges that calls `on_change` as soon as configure_pod records something
    it created (a rule, a VRF), so a crash before the attach completes still
    leaves the row saying what to remove from the pod."""

    on_change: Callable[[PodChanges], None] = lambda changes: None

    def __post_init__(self) -> None:
        self.rules = _SavingRules(lambda: self.on_change(self))

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "vrf_created" and value and "on_change" in self.__dict__:
            self.on_change(self)


def saver(ctx: AgentContext, rec: AttachmentRecord) -> Callable[[PodChanges], None]:
    def save(changes: PodChanges) -> None:
        # Synchronous on purpose: it must land before configure_pod's next
        # step; one small SQLite write.
        result = {**rec.result, "pod_changes": changes.to_json()}
        ctx.store.put_attachment(dataclasses.replace(rec, result=result))

    return save
