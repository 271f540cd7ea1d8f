"""One place maps client failures to dranet errors; retries follow from the mapping."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from dranet.errors import NotFoundError, PeerError
from dranet_kubelet_plugin.kube import Kube, KubeApiError, RetryPolicy, api_error


def test_404_is_not_found() -> None:
    error = api_error(
        ApiException(
            status=404, reason="Not Found", body='{"kind":"Status","message":"x \\"y\\" not found"}'
        )
    )
    assert isinstance(error, NotFoundError) and 'x "y" not found' in str(error)


@pytest.mark.parametrize(
    ("status", "retryable", "conflict"),
    [
        (409, False, True),
        (422, False, False),
        (429, True, False),
        (500, True, False),
        (503, True, False),
        (403, False, False),
    ],
)
def test_statuses(status: int, retryable: bool, conflict: bool) -> None:
    error = api_error(
        ApiException(status=status, reason="r", body='{"reason":"Why","message":"m"}')
    )
    assert isinstance(error, KubeApiError) and isinstance(error, PeerError)
    assert (error.retryable, error.conflict, error.reason) == (retryable, conflict, "Why")


def test_invalid_carries_the_causes() -> None:
    body = (
        '{"reason":"Invalid","message":"bad",'
        '"details":{"causes":[{"field":"spec.x","message":"no"}]}}'
    )
    error = api_error(ApiException(status=422, reason="Unprocessable Entity", body=body))
    assert isinstance(error, KubeApiError) and error.causes == (
        {"field": "spec.x", "message": "no"},
    )


def test_transport_failures_are_retryable() -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 1)
    error = api_error(urllib3.exceptions.ReadTimeoutError(pool, "/x", "read timed out"))
    assert isinstance(error, KubeApiError) and error.status == 0 and error.retryable


async def test_unreachable_server_fails_after_the_retries(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(
        '{"apiVersion":"v1","kind":"Config","current-context":"c",'
        f'"clusters":[{{"name":"c","cluster":{{"server":"http://127.0.0.1:{port}"}}}}],'
        '"users":[{"name":"u","user":{"token":"t"}}],'
        '"contexts":[{"name":"c","context":{"cluster":"c","user":"u"}}]}'
    )
    kube = Kube.from_kubeconfig(
        str(config), timeout=1, retry=RetryPolicy(attempts=2, initial_wait=0.01)
    )
    try:
        with pytest.raises(KubeApiError) as caught:
            await kube.get_node("n")
    finally:
        kube.close()
    assert caught.value.status == 0 and "reachable" in str(caught.value)
