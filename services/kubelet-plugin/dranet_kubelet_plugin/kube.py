"""A thin async wrapper over the official `kubernetes` client.

Only the calls the plugin makes, on plain JSON dicts (resource.k8s.io/v1 and
core/v1), built with the client's `ApiClient` so authentication, TLS and
kubeconfig handling stay the client's. Blocking calls run in threads.

Errors: every `ApiException` / transport failure becomes one of the dranet
errors here (`api_error`), the only place that knows about ApiException.
Server errors, throttling and timeouts are retried (tenacity) inside
`request`; conflicts are retried by callers with `retry_conflicts`, because
a conflict needs a fresh read before the write can be tried again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from dranet.errors import DranetError, NotFoundError, PeerError

log = logging.getLogger(__name__)

T = TypeVar("T")
RESOURCE = "/apis/resource.k8s.io/v1"
CORE = "/api/v1"


class KubeApiError(PeerError):
    """The API server refused or failed a request (HTTP status, Status reason)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        causes: tuple[Mapping[str, Any], ...] = (),
    ) -> None:
        self.status = status
        self.reason = reason
        self.causes = causes
        hint = {
            0: "check that the API server is reachable from the node",
            403: "check the RBAC rules of the driver's ServiceAccount",
            409: "re-read the object and retry",
            422: "the object is invalid; see the causes",
        }.get(status, "")
        super().__init__(f"API server answered {status} {reason}: {message}", hint=hint)

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def retryable(self) -> bool:
        """Worth sending again as is: transport failures, throttling, server errors."""
        return self.status in (0, 429) or self.status >= 500


class KubeNotFoundError(NotFoundError):
    """The object does not exist (HTTP 404)."""


def _status_body(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        return {"message": text[:500]}
    return body if isinstance(body, dict) else {}


def api_error(exc: BaseException) -> DranetError:
    """The dranet error for a failed call: 404 -> NotFoundError, the rest KubeApiError."""
    if isinstance(exc, DranetError):
        return exc
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        body = _status_body(exc.body)
        message = str(body.get("message") or exc.reason or "no message")
        reason = str(body.get("reason") or exc.reason or "")
        if status == 404:
            return KubeNotFoundError(message)
        causes = tuple((body.get("details") or {}).get("causes") or ())
        return KubeApiError(status, reason, message, causes=causes)
    # urllib3 timeouts, refused connections, resets: no HTTP status at all.
    return KubeApiError(0, "Unreachable", f"{type(exc).__name__}: {exc}")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, KubeApiError) and exc.retryable


def _is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, KubeApiError) and exc.conflict


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_wait: float = 0.1
    max_wait: float = 2.0


async def retry_conflicts(
    operation: Callable[[], Awaitable[T]], *, policy: RetryPolicy = RetryPolicy()
) -> T:
    """Runs a read-modify-write `operation` again while it ends in a 409 conflict."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_is_conflict),
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait),
        reraise=True,
    ):
        with attempt:
            return await operation()
    raise AssertionError("unreachable")  # pragma: no cover


def load_api_client(kubeconfig: str = "") -> k8s_client.ApiClient:
    """An ApiClient from `kubeconfig`, else from the in-cluster ServiceAccount."""
    configuration = k8s_client.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    else:
        k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    # tenacity is the one retry layer; urllib3's own retries would multiply it.
    configuration.retries = False
    return k8s_client.ApiClient(configuration)


class Kube:
    """The API calls of the plugin; every method is a coroutine returning JSON dicts."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._api = api_client
        self._timeout = timeout
        self._retry = retry

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str = "", **kwargs: Any) -> Kube:
        return cls(load_api_client(kubeconfig), **kwargs)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    # --- transport ---------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*request, _request_timeout=self._timeout)
            try:
                data = response.read()  # type: ignore[no-untyped-call]
            finally:
                response.response.release_conn()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise api_error(exc) from exc
        text = data.decode("utf-8") if data else ""
        if not 200 <= response.status <= 299:
            failure = ApiException(status=response.status, reason=response.reason, body=text)
            raise api_error(failure)
        return json.loads(text) if text else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API call, retried on server errors, throttling and timeouts."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            stop=stop_after_attempt(self._retry.attempts),
            wait=wait_exponential(multiplier=self._retry.initial_wait, max=self._retry.max_wait),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.debug(
                        "retrying %s %s (attempt %d)",
                        method,
                        path,
                        attempt.retry_state.attempt_number,
                    )
                return await asyncio.to_thread(self._call, method, path, query, body, content_type)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- ResourceClaims and DeviceClasses -----------------------------------

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", _claim_path(namespace, name))

    async def replace_claim_status(self, claim: Mapping[str, Any]) -> dict[str, Any]:
        """PUT .../status with the claim's resourceVersion (409 when stale)."""
        meta = claim["metadata"]
        path = _claim_path(meta["namespace"], meta["name"]) + "/status"
        return await self.request("PUT", path, body=dict(claim))

    async def get_device_class(self, name: str) -> dict[str, Any]:
        return await self.request("GET", f"{RESOURCE}/deviceclasses/{_q(name)}")

    # --- ResourceSlices ----------------------------------------------------

    async def list_slices(self, driver: str, node_name: str) -> list[dict[str, Any]]:
        selector = f"spec.driver={driver},spec.nodeName={node_name}"
        query = [("fieldSelector", selector)]
        body = await self.request("GET", f"{RESOURCE}/resourceslices", query=query)
        return list(body.get("items") or [])

    async def create_slice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", f"{RESOURCE}/resourceslices", body=dict(body))

    async def update_slice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return await self.request("PUT", f"{RESOURCE}/resourceslices/{_q(name)}", body=dict(body))

    async def delete_slice(self, name: str, *, uid: str = "", resource_version: str = "") -> bool:
        """Deletes one slice; False when it was already gone."""
        wanted = (("uid", uid), ("resourceVersion", resource_version))
        preconditions = {key: value for key, value in wanted if value}
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}
        try:
            await self.request("DELETE", f"{RESOURCE}/resourceslices/{_q(name)}", body=body)
        except NotFoundError:
            return False
        return True

    # --- core/v1 -----------------------------------------------------------

    async def get_node(self, name: str) -> dict[str, Any]:
        return await self.request("GET", f"{CORE}/nodes/{_q(name)}")

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> dict[str, Any]:
        path = f"{CORE}/namespaces/{_q(namespace)}/events"
        return await self.request("POST", path, body=dict(event))


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _claim_path(namespace: str, name: str) -> str:
    return f"{RESOURCE}/namespaces/{_q(namespace)}/resourceclaims/{_q(name)}"
