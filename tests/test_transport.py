"""Retry and error rules of the transport, for Drip and AsyncDrip alike (faults via MockTransport)."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import drip._transport as transport_mod
from drip import (
    AsyncDrip,
    Drip,
    DripAPIError,
    DripAuthenticationError,
    DripBadRequestError,
    DripConflictError,
    DripError,
    DripNetworkError,
    DripNotFoundError,
    DripRateLimitError,
    DripServerError,
    DripTimeoutError,
)

KEY = "sk_test_transport_0001"
USAGE_OK = {
    "success": True,
    "usageEventId": "use_1",
    "customerId": "cus_1",
    "usageType": "api_calls",
    "quantity": 1,
    "isInternal": True,
    "message": "Usage tracked",
}
CUSTOMER = {"id": "cus_1", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"}

Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests from a list of steps; records what it saw."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest) -> Callable[..., Drip | AsyncDrip]:
    def build(script: Script, **options: Any) -> Drip | AsyncDrip:
        options.setdefault("max_retries", 3)
        if request.param == "sync":
            return Drip(KEY, "http://drip.test", transport=httpx.MockTransport(script), **options)
        return AsyncDrip(KEY, "http://drip.test", transport=httpx.MockTransport(script), **options)

    return build


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record backoff waits instead of sleeping through them."""
    waits: list[float] = []

    async def fake_async_sleep(delay: float) -> None:
        waits.append(delay)

    # only the transport's view of the modules: patching time.sleep / asyncio.sleep themselves
    # would also catch other threads' sleeps (the session's server ticks every 0.1 s)
    monkeypatch.setattr(transport_mod, "time", _Patched(time, sleep=waits.append))
    monkeypatch.setattr(transport_mod, "asyncio", _Patched(asyncio, sleep=fake_async_sleep))
    return waits


class _Patched:
    """A module with some attributes replaced."""

    def __init__(self, module: Any, **replaced: Any) -> None:
        self._module = module
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


async def call(client: Drip | AsyncDrip, name: str, **kwargs: Any) -> Any:
    result = getattr(client, name)(**kwargs)
    return await result if inspect.isawaitable(result) else result


def track(client: Drip | AsyncDrip) -> Any:
    return call(client, "track_usage", customer_id="cus_1", meter="api_calls", quantity=1)


async def test_5xx_is_retried_with_the_same_idempotency_key(make: Any, sleeps: list[float]) -> None:
    script = Script(
        httpx.Response(503, json={"error": "busy", "message": "busy"}),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(200, json=USAGE_OK),
    )
    result = await track(make(script))
    assert result.usage_event_id == "use_1"
    keys = [b["idempotencyKey"] for b in script.bodies()]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert len(sleeps) == 2 and all(0 < s <= 8 for s in sleeps)


async def test_two_calls_get_different_keys(make: Any) -> None:
    script = Script(httpx.Response(200, json=USAGE_OK))
    client = make(script)
    await track(client)
    await track(client)
    keys = [b["idempotencyKey"] for b in script.bodies()]
    assert keys[0] != keys[1]


async def test_callers_key_wins(make: Any) -> None:
    script = Script(httpx.Response(200, json=USAGE_OK))
    await call(
        make(script),
        "track_usage",
        customer_id="c",
        meter="m",
        quantity=1,
        idempotency_key="order_7",
    )
    assert script.bodies()[0]["idempotencyKey"] == "order_7"


async def test_429_honours_retry_after(make: Any, sleeps: list[float]) -> None:
    script = Script(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow down"}),
        httpx.Response(200, json=USAGE_OK),
    )
    await track(make(script))
    assert sleeps == [2.0]


async def test_429_retry_after_in_body_when_header_missing(make: Any, sleeps: list[float]) -> None:
    script = Script(
        httpx.Response(429, json={"error": "slow", "retryAfter": 3}),
        httpx.Response(200, json=USAGE_OK),
    )
    await track(make(script))
    assert sleeps == [3.0]


async def test_429_exhausted_raises_rate_limit_error(make: Any, sleeps: list[float]) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}, json={"message": "slow"}))
    with pytest.raises(DripRateLimitError) as info:
        await track(make(script, max_retries=2))
    assert info.value.retry_after == 1.0
    assert info.value.status_code == 429
    assert len(script.requests) == 3


async def test_retry_after_beyond_total_budget_gives_up(make: Any, sleeps: list[float]) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "120"}, json={"message": "x"}))
    with pytest.raises(DripRateLimitError):
        await track(make(script, max_retry_time=10))
    assert len(script.requests) == 1 and sleeps == []


async def test_timeouts_are_retried_then_raise(make: Any, sleeps: list[float]) -> None:
    script = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(DripTimeoutError) as info:
        await track(make(script, max_retries=2))
    assert isinstance(info.value, DripNetworkError)
    assert len(script.requests) == 3
    assert not isinstance(info.value, httpx.HTTPError)


async def test_reset_then_success(make: Any, sleeps: list[float]) -> None:
    script = Script(httpx.RemoteProtocolError("peer closed"), httpx.Response(200, json=USAGE_OK))
    result = await track(make(script))
    assert result.success is True and len(script.requests) == 2


async def test_unsafe_write_is_not_retried_after_reset(make: Any, sleeps: list[float]) -> None:
    script = Script(httpx.ReadError("reset"), httpx.Response(201, json=CUSTOMER))
    with pytest.raises(DripNetworkError):
        await call(make(script), "create_customer", external_customer_id="u1")
    assert len(script.requests) == 1


async def test_unsafe_write_is_retried_when_nothing_was_sent(
    make: Any, sleeps: list[float]
) -> None:
    script = Script(httpx.ConnectError("refused"), httpx.Response(201, json=CUSTOMER))
    customer = await call(make(script), "create_customer", external_customer_id="u1")
    assert customer.id == "cus_1" and len(script.requests) == 2


async def test_get_is_retried_on_500(make: Any, sleeps: list[float]) -> None:
    script = Script(
        httpx.Response(500, json={"message": "oops"}), httpx.Response(200, json=CUSTOMER)
    )
    assert (await call(make(script), "get_customer", customer_id="cus_1")).id == "cus_1"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, DripBadRequestError),
        (422, DripBadRequestError),
        (401, DripAuthenticationError),
        (404, DripNotFoundError),
        (409, DripConflictError),
        (503, DripServerError),
    ],
)
async def test_status_maps_to_error_class(
    make: Any, sleeps: list[float], status: int, cls: type[DripAPIError]
) -> None:
    body = {"error": "nope", "message": f"failed with {status}", "code": "SOME_CODE"}
    script = Script(httpx.Response(status, json=body, headers={"x-request-id": "req_9"}))
    with pytest.raises(cls) as info:
        await track(make(script, max_retries=0))
    err = info.value
    assert (err.status_code, err.message, err.code, err.request_id) == (
        status,
        f"failed with {status}",
        "SOME_CODE",
        "req_9",
    )
    assert f"(status: {status})" in str(err)
    if status < 500:
        assert len(script.requests) == 1


async def test_4xx_is_not_retried(make: Any, sleeps: list[float]) -> None:
    script = Script(httpx.Response(422, json={"message": "bad"}))
    with pytest.raises(DripBadRequestError):
        await track(make(script))
    assert len(script.requests) == 1 and sleeps == []


async def test_conflict_exposes_existing_customer(make: Any) -> None:
    body = {"error": "exists", "message": "exists", "existingCustomerId": "cus_7"}
    script = Script(httpx.Response(409, json=body))
    with pytest.raises(DripConflictError) as info:
        await call(make(script), "create_customer", external_customer_id="u")
    assert info.value.existing_customer_id == "cus_7"


async def test_an_error_page_that_is_not_json_is_named_not_dumped(
    make: Any, sleeps: list[float]
) -> None:
    """A base URL that reaches another web server (a wrong port, a proxy): its HTML error
    page, whole, was the error's message (`drip runs: <!DOCTYPE HTML> ...`). Now the status,
    the request's URL, what answered and the page's title; the page stays in ``body``."""
    page = (
        "<!DOCTYPE HTML>\n<html><head><title>Error response</title></head>"
        f"<body><h1>404</h1>{'x' * 5000}</body></html>"
    )
    script = Script(httpx.Response(404, text=page, headers={"content-type": "text/html"}))
    with pytest.raises(DripAPIError) as info:
        await track(make(script))
    message = str(info.value)
    assert "<html" not in message and "DOCTYPE" not in message and len(message) < 400
    assert message.startswith("404 Not Found from POST http")
    assert "/v1/usage" in message and "text/html: 'Error response'" in message
    assert info.value.status_code == 404 and info.value.body == {"error": page}


async def test_non_json_success_is_a_drip_error(make: Any, sleeps: list[float]) -> None:
    script = Script(httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(DripAPIError) as info:
        await track(make(script))
    assert info.value.code == "INVALID_RESPONSE"
    assert len(script.requests) == 4  # a garbled success is retried like a 5xx (one policy)


async def test_wrong_shape_success_is_a_drip_error(make: Any, sleeps: list[float]) -> None:
    script = Script(httpx.Response(200, json={"unexpected": True}))
    with pytest.raises(DripAPIError) as info:
        await track(make(script))
    assert info.value.code == "INVALID_RESPONSE"


async def test_a_success_that_cannot_be_read_for_a_reason_of_ours_is_a_drip_error(
    make: Any, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the answer's fault (a model that cannot be built at exit, a pydantic plugin that
    raises): still an ``INVALID_RESPONSE`` naming what failed, with its traceback, and
    retried like one, never an unnamed error out of the client."""
    from drip import models

    real = models.TrackUsageResult.model_validate_json.__func__  # type: ignore[attr-defined]
    failures = [RuntimeError("cannot schedule new futures after interpreter shutdown")]

    def reading(cls: Any, raw: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(cls, raw)

    monkeypatch.setattr(models.TrackUsageResult, "model_validate_json", classmethod(reading))
    script = Script(httpx.Response(200, json=USAGE_OK))
    assert (await track(make(script))).usage_event_id == "use_1"
    assert len(script.requests) == 2 and len(sleeps) == 1  # read on the second answer

    failures.extend([RuntimeError("plugin broke")] * 4)
    with pytest.raises(DripAPIError) as info:
        await track(make(script))
    assert info.value.code == "INVALID_RESPONSE" and info.value.status_code == 200
    assert "could not be read: RuntimeError('plugin broke')" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_425_too_early_is_retried(make: Any, sleeps: list[float]) -> None:
    script = Script(
        httpx.Response(425, json={"message": "too early"}), httpx.Response(200, json=USAGE_OK)
    )
    assert (await track(make(script))).usage_event_id == "use_1"
    assert len(script.requests) == 2 and len(sleeps) == 1


def test_one_retry_policy_for_client_methods_and_delivery() -> None:
    # the delivery sender asks the transport's own function: there is no second status list
    from drip._delivery import sender

    assert sender.retry_delay is transport_mod.retry_delay
    retryable = [
        s for s in range(400, 600) if transport_mod.retryable(DripAPIError("x", status_code=s))
    ]
    assert retryable == [408, 425, 429, *range(500, 600)]


async def test_odd_error_bodies_never_break_the_error(make: Any, sleeps: list[float]) -> None:
    for body in ([1, 2], {"error": {"nested": True}}, "plain text"):
        content = json.dumps(body) if not isinstance(body, str) else body
        script = Script(httpx.Response(400, content=content.encode()))
        with pytest.raises(DripAPIError) as info:
            await track(make(script))
        assert isinstance(str(info.value), str) and info.value.status_code == 400


async def test_ping_reports_instead_of_raising_on_http_errors(make: Any) -> None:
    script = Script(httpx.Response(503, json={"status": "degraded"}))
    result = await call(make(script), "ping")
    assert result.ok is False and result.status == "degraded" and len(script.requests) == 1
    assert script.requests[0].url.path == "/health"


async def test_ping_healthy(make: Any) -> None:
    script = Script(httpx.Response(200, json={"status": "healthy", "timestamp": 1700000000}))
    result = await call(make(script), "ping")
    assert result.ok and result.timestamp == 1700000000 and result.latency_ms >= 0


async def test_every_failure_is_a_drip_error(make: Any, sleeps: list[float]) -> None:
    for exc in (httpx.ConnectTimeout("x"), httpx.WriteError("x"), httpx.ProxyError("x")):
        with pytest.raises(DripError):
            await track(make(Script(exc), max_retries=0))


async def test_path_ids_are_escaped(make: Any) -> None:
    script = Script(httpx.Response(200, json=CUSTOMER))
    await call(make(script), "get_customer", customer_id="a/../b?x")
    assert script.requests[0].url.raw_path == b"/v1/customers/a%2F..%2Fb%3Fx"


def test_backoff_grows_and_is_bounded() -> None:
    delays = [transport_mod.backoff_delay(a) for a in range(12)]
    assert 0.125 <= delays[0] <= 0.25
    assert all(d <= 8.0 for d in delays)
    assert delays[5] >= 4.0
    assert transport_mod.backoff_delay(3, retry_after=1.5) == 1.5


def test_retry_after_http_date() -> None:
    assert transport_mod.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert transport_mod.parse_retry_after("2.5") == 2.5
    assert transport_mod.parse_retry_after("soon") is None


def test_network_errors_name_the_full_url() -> None:
    import socket

    from drip import Drip
    from drip.errors import DripNetworkError

    with socket.socket() as sock:  # a free port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        Drip(
            api_key="sk_test_" + "0" * 32, base_url=f"http://127.0.0.1:{port}", max_retries=0
        ) as client,
        pytest.raises(DripNetworkError) as caught,
    ):
        client.get_customer("cus_1")
    assert f"GET http://127.0.0.1:{port}/v1/customers/cus_1" in str(caught.value)


ANSWER = {"results": [{"index": 1, "id": "evt_2", "status": "rejected", "code": "BAD",
                       "message": "no"}],
          "statuses": "cr", "created": 1, "duplicates": 0, "updated": 0, "rejected": 1,
          "columns": True}  # fmt: skip


def _ingest_answer(answer: Any) -> Any:
    """What the delivery's ``IngestSender`` makes of ``answer`` to a batch."""
    from drip._config import resolve_settings

    sender = transport_mod.IngestSender(
        resolve_settings(api_key=KEY, base_url="http://drip.test", env={}),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=answer)),
    )
    try:
        return sender(b'{"items":[]}')
    finally:
        sender.close()


def test_the_ingest_answer_is_read_without_building_a_schema() -> None:
    result = _ingest_answer(ANSWER)
    assert (result.statuses, result.created, result.rejected, result.columns) == ("cr", 1, 1, True)
    [item] = result.results
    assert (item.index, item.id, item.status, item.code, item.message) == (
        1, "evt_2", "rejected", "BAD", "no"
    )  # fmt: skip
    full = {**ANSWER, "statuses": None, "results": [{"index": 0, "id": None, "status": "created"}]}
    assert _ingest_answer(full).results[0].status == "created"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"created": "1"}, "'created' is not an integer: '1'"),
        ({"rejected": True}, "'rejected' is not an integer: True"),
        ({"statuses": "cx"}, "'statuses' is not a string of c, d, u and r: 'cx'"),
        ({"columns": "yes"}, "'columns' is not a boolean: 'yes'"),
        ({"results": None}, "'results' is not a list: None"),
        ({"results": [3]}, "results[0] is not an object: 3"),
        ({"results": [{"index": "1", "status": "created"}]}, "results[0].index is not an integer"),
        ({"results": [{"index": 1, "status": "lost"}]}, "results[0].status is not one of"),
        ({"results": [{"index": 1, "status": "created", "id": 7}]}, "results[0].id is not a"),
    ],
)
def test_an_ingest_answer_of_another_shape_is_an_invalid_response_naming_the_field(
    change: dict[str, Any], named: str
) -> None:
    with pytest.raises(DripAPIError) as info:
        _ingest_answer({**ANSWER, **change})
    assert info.value.code == "INVALID_RESPONSE" and info.value.status_code == 200
    assert "has an unexpected shape" in str(info.value) and named in str(info.value)


def test_an_ingest_answer_that_is_not_an_object_is_an_invalid_response() -> None:
    with pytest.raises(DripAPIError, match="the answer is not an object: list"):
        _ingest_answer([1, 2])
