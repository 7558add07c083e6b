"""``drip.integrations.httpx``: baggage on outgoing calls, sync and async, per client or global."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from drip.integrations import httpx as drip_httpx

import drip
from drip._baggage import parse
from drip.testing import capture

seen: list[httpx.Request] = []


def handler(request: httpx.Request) -> httpx.Response:
    seen.append(request)
    return httpx.Response(200)


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    seen.clear()
    with capture():
        yield
    drip_httpx.uninstrument()


def carried(request: httpx.Request) -> dict[str, str]:
    return parse(request.headers.get("baggage"))


def test_one_client_sync() -> None:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    drip_httpx.instrument(client)
    drip_httpx.instrument(client)  # once only
    other = httpx.Client(transport=httpx.MockTransport(handler))
    with drip.run("a", customer_id="cus_1") as run:
        client.get("http://b/x", headers={"baggage": "k=v"})
        other.get("http://b/y")
    client.get("http://b/z")
    assert carried(seen[0]) == {"run": run.id, "customer": "cus_1", "workflow": "a"}
    assert seen[0].headers["baggage"].startswith("k=v,")
    assert "baggage" not in seen[1].headers  # not instrumented
    assert "baggage" not in seen[2].headers  # outside the run
    drip_httpx.uninstrument(client)
    with drip.run("a", customer_id="cus_1"):
        client.get("http://b/x")
    assert "baggage" not in seen[3].headers


async def test_one_client_async_and_parent_event() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    drip_httpx.instrument(client)

    @drip.metered("call")
    async def call() -> str | None:
        await client.get("http://b/x")
        return drip.current_event().id

    async with drip.run("a", customer_id="cus_1"):
        event_id = await call()
    assert carried(seen[0])["parent"] == event_id


async def test_every_client() -> None:
    drip_httpx.instrument()
    sync = httpx.Client(transport=httpx.MockTransport(handler))
    async_client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    with drip.run("a", customer_id="cus_2"):
        sync.get("http://b/x")
        await async_client.get("http://b/y")
    assert [carried(r)["customer"] for r in seen] == ["cus_2", "cus_2"]
    drip_httpx.uninstrument()
    with drip.run("a", customer_id="cus_2"):
        sync.get("http://b/x")
    assert "baggage" not in seen[2].headers


async def test_an_injection_that_fails_never_fails_the_call(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from drip import context

    def boom(headers: object) -> object:
        raise RuntimeError("injection failed")

    monkeypatch.setattr(context, "_propagation", (boom, context._propagation[1]))
    one = httpx.Client(transport=httpx.MockTransport(handler))
    drip_httpx.instrument(one)
    drip_httpx.instrument()
    every = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    with drip.run("a", customer_id="cus_1"):
        assert one.get("http://b/x").status_code == 200
        assert (await every.get("http://b/y")).status_code == 200
    assert caplog.text.count("without drip's baggage") >= 2


async def test_only_the_hosts_named_get_baggage() -> None:
    # baggage names the customer (the application's own id for it too): with hosts=, a call to
    # a third-party API in the run does not carry it
    with pytest.raises(TypeError, match="hosts takes host names"):
        drip_httpx.instrument(hosts=[""])
    drip_httpx.instrument(hosts=["*.internal", "billing"])
    sync = httpx.Client(transport=httpx.MockTransport(handler))
    one = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    drip_httpx.instrument(one, hosts="reports.internal")
    with drip.run("a", external_customer_id="alice@example.com"):
        sync.get("http://api.vendor.example/v1")
        sync.get("http://Reports.Internal:8080/x")
        sync.get("http://billing/y")
        await one.get("http://reports.internal/z")
        await one.get("http://api.vendor.example/v1")
    has = ["baggage" in r.headers for r in seen]
    assert has == [False, True, True, True, False]
    assert carried(seen[1])["customer_ext"] == "alice@example.com"
    drip_httpx.uninstrument()
    drip_httpx.instrument()  # every host again
    with drip.run("a", customer_id="cus_1"):
        sync.get("http://api.vendor.example/v1")
    assert "baggage" in seen[-1].headers
