"""Background Responses (``background=True``): the create's event is recorded, with the usage,
by the ``responses.retrieve`` / ``.cancel`` that returns the response done; once per id."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from drip.integrations import _openai_background
from drip.integrations import openai as drip_openai

import drip

from .conftest import response_obj
from .test_missing_usage import only_llm


class Background:
    """A fake Responses API whose background response is ``statuses`` at each poll in turn
    (the last one repeats), with usage once it is done."""

    def __init__(self, *statuses: str) -> None:
        self.statuses = list(statuses)
        self.polls = 0

    def answer(self, status: str) -> dict[str, Any]:
        body = response_obj(status)
        if status in ("queued", "in_progress"):
            body["usage"] = None
        return body

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and request.url.path.endswith("/responses"):
            return httpx2.Response(200, json=self.answer("queued"))
        if request.url.path.endswith("/cancel"):
            return httpx2.Response(200, json=self.answer("cancelled"))
        status = self.statuses[min(self.polls, len(self.statuses) - 1)]
        self.polls += 1
        return httpx2.Response(200, json=self.answer(status))


async def call(client: Any, method: Any, *args: Any, **kw: Any) -> Any:
    result = method(*args, **kw)
    return await result if isinstance(client, __import__("openai").AsyncOpenAI) else result


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_background_response_is_recorded_once_in_the_creates_run_when_done(
    recorder: Any, make_client: Any, async_: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=async_, handler=Background("in_progress", "completed"))
    async with drip.run("create", customer_id=recorder.customer) as created:
        answer = await call(client, client.responses.create, model="gpt-4.1", input="hi",
                            background=True)  # fmt: skip
    assert answer.status == "queued"
    async with drip.run("poll", customer_id=recorder.customer) as polled:
        statuses = [
            (await call(client, client.responses.retrieve, answer.id)).status for _ in range(4)
        ]
    assert statuses == ["in_progress", "completed", "completed", "completed"]
    event = only_llm(recorder.events(created.id))
    assert (event.quantity, event.outcome) == (70, "ok")
    meta = event.metadata
    assert (meta["input_tokens"], meta["output_tokens"], meta["model"]) == (50, 20, "gpt-4.1")
    assert "complete" not in meta and "status" not in meta and "usage" not in meta
    assert [e for e in recorder.events(polled.id) if e.meter == "llm_tokens"] == []


def test_a_response_created_elsewhere_is_recorded_where_it_is_seen_done_once(
    recorder: Any, make_client: Any
) -> None:
    drip_openai.instrument()
    client = make_client(handler=Background("in_progress", "completed"))
    with drip.run("poll", customer_id=recorder.customer) as run:
        for _ in range(3):
            client.responses.retrieve("resp_1")
    event = only_llm(recorder.events(run.id))
    assert event.quantity == 70 and "complete" not in event.metadata


def test_a_cancelled_background_response_is_recorded_with_its_status(
    recorder: Any, make_client: Any
) -> None:
    drip_openai.instrument()
    client = make_client(handler=Background("in_progress"))
    with drip.run("create", customer_id=recorder.customer) as run:
        answer = client.responses.create(model="gpt-4.1", input="hi", background=True)
        client.responses.retrieve(answer.id)
        client.responses.cancel(answer.id)
    event = only_llm(recorder.events(run.id))
    assert event.quantity == 70 and event.metadata["status"] == "cancelled"


def test_a_background_response_never_seen_done_is_recorded_incomplete_at_exit(
    recorder: Any, make_client: Any
) -> None:
    drip_openai.instrument()
    client = make_client(handler=Background("in_progress"))
    with drip.run("create", customer_id=recorder.customer) as run:
        answer = client.responses.create(model="gpt-4.1", input="hi", background=True)
        client.responses.retrieve(answer.id)
    _openai_background._end_waiting_at_exit()
    meta = only_llm(recorder.events(run.id)).metadata
    assert (meta["complete"], meta["status"]) == (False, "in_progress")


def test_uninstrument_restores_retrieve_and_cancel(make_client: Any) -> None:
    from openai.resources.responses import Responses

    before = [vars(Responses)[name] for name in ("retrieve", "cancel")]
    drip_openai.instrument()
    assert not any(
        vars(Responses)[n] is b for n, b in zip(("retrieve", "cancel"), before, strict=True)
    )
    drip_openai.uninstrument()
    assert all(vars(Responses)[n] is b for n, b in zip(("retrieve", "cancel"), before, strict=True))
