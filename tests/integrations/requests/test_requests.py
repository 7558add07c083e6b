"""``drip.integrations.requests``: baggage on outgoing calls, per session or for every session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("requests")

import requests
from drip.integrations import requests as drip_requests
from requests.adapters import BaseAdapter

import drip
from drip._baggage import parse
from drip.testing import capture


class Recorder(BaseAdapter):
    """The network, faked: records each prepared request and answers 200."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.seen.append(request)
        response = requests.Response()
        response.status_code = 200
        response.request = request
        return response

    def close(self) -> None:
        pass


def session() -> tuple[requests.Session, Recorder]:
    s = requests.Session()
    recorder = Recorder()
    s.mount("http://", recorder)
    return s, recorder


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    with capture():
        yield
    drip_requests.uninstrument()


def test_one_session() -> None:
    s, rec = session()
    other, other_rec = session()
    drip_requests.instrument(s)
    with drip.run("a", customer_id="cus_1") as run:
        s.get("http://b/x")
        other.get("http://b/y")
    s.get("http://b/z")
    assert parse(rec.seen[0].headers["baggage"])["run"] == run.id
    assert "baggage" not in other_rec.seen[0].headers
    assert "baggage" not in rec.seen[1].headers
    drip_requests.uninstrument(s)
    with drip.run("a", customer_id="cus_1"):
        s.get("http://b/x")
    assert "baggage" not in rec.seen[2].headers


def test_every_session() -> None:
    drip_requests.instrument()
    s, rec = session()
    with drip.customer("cus_3"):
        s.get("http://b/x", headers={"Baggage": "k=v"})
    assert rec.seen[0].headers["baggage"] == "k=v,drip.customer=cus_3"


def test_a_bytes_baggage_header_set_by_the_application_is_kept_and_extended() -> None:
    # requests sends bytes header values as they are; drip's injection once raised TypeError
    # out of the application's own call (merge split bytes with a str)
    drip_requests.instrument()
    s, rec = session()
    with drip.run("a", customer_id="cus_1") as run:
        response = s.get("http://b/x", headers={"baggage": b"k=v"})
    assert response.status_code == 200
    sent = rec.seen[0].headers["baggage"]
    assert sent.startswith("k=v,") and parse(sent)["run"] == run.id


def test_a_header_drip_cannot_read_is_sent_untouched_and_the_call_goes_through() -> None:
    drip_requests.instrument()
    s, rec = session()
    odd = b"k=\xff\xfe"  # not UTF-8: drip must neither fail nor mangle it
    with drip.run("a", customer_id="cus_1"):
        assert s.get("http://b/x", headers={"baggage": odd}).status_code == 200
    assert parse(rec.seen[0].headers["baggage"])  # still carries the run


def test_an_injection_that_fails_never_fails_the_call(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from drip import context

    def boom(headers: Any) -> Any:
        raise RuntimeError("injection failed")

    monkeypatch.setattr(context, "_propagation", (boom, context._propagation[1]))
    drip_requests.instrument()
    s, _ = session()
    with drip.run("a", customer_id="cus_1"):
        assert s.get("http://b/x").status_code == 200
    assert "without drip's baggage" in caplog.text


def test_only_the_hosts_named_get_baggage() -> None:
    s, rec = session()
    drip_requests.instrument(s, hosts=["*.svc.cluster.local"])
    drip_requests.instrument(hosts="billing")
    other, other_rec = session()
    with drip.run("a", customer_id="cus_1"):
        s.get("http://reports.svc.cluster.local/x")
        s.get("http://api.vendor.example/x")
        other.get("http://billing/x")
        other.get("http://api.vendor.example/x")
    assert ["baggage" in r.headers for r in rec.seen] == [True, False]
    assert ["baggage" in r.headers for r in other_rec.seen] == [True, False]
    drip_requests.uninstrument(s)
