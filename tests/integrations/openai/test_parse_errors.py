"""``.parse()`` that raises after the provider answered (and billed): the tokens are recorded,
and the exception is raised where it is without drip (real openai SDK, network faked)."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pydantic
import pytest
from drip.integrations import openai as drip_openai

import drip

from .conftest import chat_completion

MESSAGES = [{"role": "user", "content": "hi"}]


class Answer(pydantic.BaseModel):
    a: int


def cut_by_length(request: Any) -> Any:
    answer = chat_completion()
    answer["choices"][0].update(finish_reason="length", message={"role": "assistant",
                                                                 "content": '{"a": '})  # fmt: skip
    return httpx2.Response(200, json=answer)


def only_llm(events: list[Any]) -> Any:
    llm = [e for e in events if e.meter == "llm_tokens"]
    assert len(llm) == 1, events
    return llm[0]


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_parse_cut_by_length_records_the_billed_tokens(
    recorder: Any, make_client: Any, async_: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=async_, handler=cut_by_length)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        with pytest.raises(openai.LengthFinishReasonError):
            call = client.chat.completions.parse(
                model="gpt-4o-mini", messages=MESSAGES, response_format=Answer
            )
            await call if async_ else call
    event = only_llm(recorder.events(run.id))
    assert (event.outcome, event.error_type) == ("error", "LengthFinishReasonError")
    assert event.quantity == 150 and event.metadata["output_tokens"] == 30


def test_raw_parse_raises_where_the_caller_parses(recorder: Any, make_client: Any) -> None:
    # drip parsed the raw response itself, at once: the SDK's LengthFinishReasonError came out
    # of with_raw_response.parse(...) instead of raw.parse(), and the call recorded 0 tokens
    drip_openai.instrument()
    client = make_client(handler=cut_by_length)
    with drip.run("chat", customer_id=recorder.customer) as run:
        raw = client.chat.completions.with_raw_response.parse(
            model="gpt-4o-mini", messages=MESSAGES, response_format=Answer
        )
        assert raw.http_response.status_code == 200
        with pytest.raises(openai.LengthFinishReasonError):
            raw.parse()
    event = only_llm(recorder.events(run.id))
    assert (event.quantity, event.outcome) == (150, "ok")
