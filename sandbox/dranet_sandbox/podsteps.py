"""A pod's life on the node sandbox, step by step, as the kubelet would drive it.

`new_pod` -> `allocate` (scheduler) -> `prepare` (NodePrepareResources) ->
`run_sandbox` (RunPodSandbox, the NRI hook attaches the NICs) ...
`stop_sandbox` -> `remove_sandbox` -> `unprepare` -> `deallocate`;
`start_pod`/`stop_pod` do all of it. `PodSteps` is a part of `NodeSandbox`
(`dranet_sandbox.node`), which sets the attributes it declares.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field

from dranet.errors import DranetError, PeerError
from dranet_sandbox.cleanup import best_effort, to_completion
from dranet_sandbox.controlplane import ControlPlane, PodRef
from dranet_sandbox.cri import PodSpec
from dranet_sandbox.podruntime import PodRuntime, PodStartError
from dranet_sandbox.processes import DRIVER
from dranet_sandbox.standins.kubelet import Claim, ClaimResult, KubeletStandin


@dataclass
class Pod:
    name: str
    namespace: str
    uid: str
    claims: tuple[str, ...]
    sandbox_id: str = ""
    netns: str = ""
    prepared: dict[str, ClaimResult] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ref(self) -> PodRef:
        return PodRef(self.namespace, self.name, self.uid)


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


class PodSteps:
    """The pod-lifecycle steps of `NodeSandbox`; a failed start step raises PodStartError."""

    # Set by NodeSandbox.
    namespace: str
    pods: dict[str, Pod]
    control: ControlPlane
    kubelet: KubeletStandin
    runtime: PodRuntime | None
    _kubelet_started: bool

    def new_pod(self, name: str, claims: list[str] | tuple[str, ...] = ()) -> Pod:
        pod = Pod(name, self.namespace, str(uuid.uuid4()), tuple(claims))
        self.pods[pod.uid] = pod
        return pod

    def allocate(self, pod: Pod) -> None:
        for claim in pod.claims:
            try:
                self.control.allocate(pod.namespace, claim, pod.ref)
            except DranetError as exc:
                raise PodStartError("allocate", pod.name, str(exc)) from exc

    def _claim_refs(self, pod: Pod) -> list[Claim]:
        refs = []
        for name in pod.claims:
            uid = self.control.claim(pod.namespace, name)["metadata"]["uid"]
            refs.append(Claim(pod.namespace, name, uid))
        return refs

    async def prepare(self, pod: Pod) -> dict[str, ClaimResult]:
        """NodePrepareResources; any per-claim error -> PodStartError("prepare")."""
        started = time.monotonic()
        try:
            results = await self.kubelet.prepare(self._claim_refs(pod), driver=DRIVER)
        except DranetError as exc:  # the plugin is down or broke the kubelet's rules
            raise PodStartError("prepare", pod.name, str(exc)) from exc
        pod.timings["prepare"] = _ms(started)
        errors = [f"{uid}: {r.error}" for uid, r in results.items() if r.error]
        if errors:
            raise PodStartError("prepare", pod.name, "; ".join(errors))
        pod.prepared = results
        return results

    async def run_sandbox(self, pod: Pod) -> None:
        assert self.runtime is not None
        started = time.monotonic()
        spec = PodSpec(pod.name, pod.namespace, pod.uid)
        pod.sandbox_id, pod.netns = await self.runtime.run_pod(spec)
        pod.timings["attach"] = _ms(started)

    async def stop_sandbox(self, pod: Pod) -> None:
        assert self.runtime is not None
        if pod.sandbox_id:
            started = time.monotonic()
            await self.runtime.stop_pod(pod.sandbox_id)
            pod.timings["detach"] = _ms(started)

    async def remove_sandbox(self, pod: Pod) -> None:
        assert self.runtime is not None
        if pod.sandbox_id:
            await self.runtime.remove_pod(pod.sandbox_id)
            pod.sandbox_id = ""

    async def unprepare(self, pod: Pod) -> dict[str, str]:
        refs = self._claim_refs_or_recorded(pod)
        return await self.kubelet.unprepare(refs, driver=DRIVER) if refs else {}

    def _claim_refs_or_recorded(self, pod: Pod) -> list[Claim]:
        try:
            return self._claim_refs(pod)
        except PeerError:  # a claim deleted meanwhile: unprepare only what we prepared
            return [Claim(pod.namespace, "", uid) for uid in pod.prepared]

    def deallocate(self, pod: Pod) -> None:
        for claim in pod.claims:
            self.control.deallocate(pod.namespace, claim)

    async def start_pod(self, name: str, claims: list[str] | tuple[str, ...] = ()) -> Pod:
        """allocate -> prepare -> RunPodSandbox. On failure the pod is cleaned up again."""
        pod = self.new_pod(name, claims)
        try:
            self.allocate(pod)
            await self.prepare(pod)
            await self.run_sandbox(pod)
        except BaseException:
            await to_completion(self.stop_pod(pod))
            raise
        return pod

    async def stop_pod(self, pod: Pod) -> None:
        """StopPodSandbox, RemovePodSandbox, unprepare, deallocate (each best effort)."""
        self.pods.pop(pod.uid, None)
        await best_effort(f"StopPodSandbox {pod.name}", self.stop_sandbox(pod))
        await best_effort(f"RemovePodSandbox {pod.name}", self.remove_sandbox(pod))
        if self._kubelet_started and self.kubelet.plugins.get(DRIVER):
            await best_effort(f"unprepare {pod.name}", self.unprepare(pod))
        with contextlib.suppress(Exception):
            self.deallocate(pod)
