"""``integrations._llm.LLMCall``: one event per call, whoever ends it, also when dropped."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
from drip.integrations._llm import LLMCall, Usage

import drip
from drip.testing import Capture, capture


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        yield c


def test_the_provider_call_nests_under_the_llm_event_and_it_under_the_caller(cap: Capture) -> None:
    @drip.metered("tool")
    def tool() -> None:
        pass

    @drip.metered("agent_step")
    def step() -> LLMCall:
        call = LLMCall("llm_tokens", "openai")
        assert call.event is not None
        token = call.event.enter()  # what the SDK method wrapper does around the provider call
        try:
            tool()
        finally:
            call.event.exit(token)
        return call

    with drip.run("wf", customer_id="cus_1"):
        step().finish_tokens("gpt-4o-mini", Usage(10, 5))
    by_meter = {e.meter: e for e in cap.events}
    assert by_meter["llm_tokens"].parent_event_id == by_meter["agent_step"].id
    assert by_meter["tool"].parent_event_id == by_meter["llm_tokens"].id
    assert by_meter["llm_tokens"].quantity == 15


def test_finished_once_from_many_threads(cap: Capture) -> None:
    with drip.run("wf", customer_id="cus_1"):
        call = LLMCall("llm_tokens", "openai")
        threads = [
            threading.Thread(target=call.finish_tokens, args=("gpt-4o-mini", Usage(i, 1)))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    [event] = cap.events
    assert event.metadata is not None and event.metadata["provider"] == "openai"


def test_a_call_dropped_unfinished_is_recorded_incomplete_once(cap: Capture) -> None:
    with drip.run("wf", customer_id="cus_1"):
        call = LLMCall("llm_tokens", "anthropic")
        del call
        gc.collect()
    [event] = cap.events
    assert (event.quantity, event.metadata) == (0, {"provider": "anthropic", "complete": False})


def test_not_recorded_without_a_customer_in_lenient_mode() -> None:
    with capture(strict=False) as lenient:
        call = LLMCall("llm_tokens", "openai")
        assert not call.recording and call.finished
        call.finish_tokens("gpt-4o-mini", Usage(1, 1))
    assert lenient.records == [] and len(lenient.errors) == 1
    # the hint fits an SDK call, which has no decorator to pass customer_id= to
    message = str(lenient.errors[0])
    assert message.startswith("an LLM call (llm_tokens) was made outside any run"), message
    assert "decorator" not in message and "drip.customer(...) around it" in message
