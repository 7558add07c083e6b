"""A chat model whose stream ends with a usage chunk, as real providers' do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

USAGE: dict[str, Any] = {
    "input_tokens": 40,
    "output_tokens": 12,
    "total_tokens": 52,
    "input_token_details": {"cache_read": 30},
    "output_token_details": {"reasoning": 2},
}


class UsageChatModel(BaseChatModel):
    """Answers "hello world" with ``USAGE``; streamed, the last chunk carries the usage."""

    model_name: str = "gpt-4o-mini-2024-07-18"
    fail: bool = False

    @property
    def _llm_type(self) -> str:
        return "usage-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:  # fmt: skip
        if self.fail:
            raise ConnectionError("provider down")
        message = AIMessage(
            content="hello world", usage_metadata=USAGE,  # type: ignore[arg-type]
            response_metadata={"model_name": self.model_name},
        )  # fmt: skip
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:  # fmt: skip
        for word in ("hello", " world"):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata=USAGE,  # type: ignore[arg-type]
                response_metadata={"model_name": self.model_name},
            )
        )  # fmt: skip


@pytest.fixture
def model() -> UsageChatModel:
    return UsageChatModel()
