"""OpenAI Responses stream events, one class per event type, typed like `openai.types.responses.*Event`.

Owns the SSE payload shapes (`event: <type>` + `data: {...}`) of a Responses stream. Imports only the sibling
`responses_types`. Invariant: every event carries `type` equal to its SSE event name and a `sequence_number`; the
renderer that builds them (responses_render) numbers them 0,1,2... with no gaps, across `error` events too.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, Field

from qwen35.api.openai.responses_types import (
    Logprob,
    OutputItem,
    OutputText,
    ReasoningTextPart,
    Response,
    SummaryTextPart,
)


class _Event(BaseModel):
    sequence_number: int

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class ResponseCreatedEvent(_Event):
    type: Literal["response.created"] = "response.created"
    response: Response


class ResponseInProgressEvent(_Event):
    type: Literal["response.in_progress"] = "response.in_progress"
    response: Response


class ResponseCompletedEvent(_Event):
    type: Literal["response.completed"] = "response.completed"
    response: Response


class ResponseIncompleteEvent(_Event):
    type: Literal["response.incomplete"] = "response.incomplete"
    response: Response


class ResponseFailedEvent(_Event):
    type: Literal["response.failed"] = "response.failed"
    response: Response


class OutputItemAddedEvent(_Event):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    output_index: int
    item: OutputItem


class OutputItemDoneEvent(_Event):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    output_index: int
    item: OutputItem


class _InItem(_Event):
    item_id: str
    output_index: int


class ContentPartAddedEvent(_InItem):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    content_index: int
    part: Union[OutputText, ReasoningTextPart] = Field(discriminator="type")


class ContentPartDoneEvent(_InItem):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    content_index: int
    part: Union[OutputText, ReasoningTextPart] = Field(discriminator="type")


class OutputTextDeltaEvent(_InItem):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    content_index: int
    delta: str
    logprobs: list[Logprob] = Field(default_factory=list)


class OutputTextDoneEvent(_InItem):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    content_index: int
    text: str
    logprobs: list[Logprob] = Field(default_factory=list)


class ReasoningTextDeltaEvent(_InItem):
    type: Literal["response.reasoning_text.delta"] = "response.reasoning_text.delta"
    content_index: int
    delta: str


class ReasoningTextDoneEvent(_InItem):
    type: Literal["response.reasoning_text.done"] = "response.reasoning_text.done"
    content_index: int
    text: str


class ReasoningSummaryPartAddedEvent(_InItem):
    type: Literal["response.reasoning_summary_part.added"] = "response.reasoning_summary_part.added"
    summary_index: int
    part: SummaryTextPart


class ReasoningSummaryPartDoneEvent(_InItem):
    type: Literal["response.reasoning_summary_part.done"] = "response.reasoning_summary_part.done"
    summary_index: int
    part: SummaryTextPart


class ReasoningSummaryTextDeltaEvent(_InItem):
    type: Literal["response.reasoning_summary_text.delta"] = "response.reasoning_summary_text.delta"
    summary_index: int
    delta: str


class ReasoningSummaryTextDoneEvent(_InItem):
    type: Literal["response.reasoning_summary_text.done"] = "response.reasoning_summary_text.done"
    summary_index: int
    text: str


class FunctionCallArgumentsDeltaEvent(_InItem):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    delta: str


class FunctionCallArgumentsDoneEvent(_InItem):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    name: str
    arguments: str


class WebSearchCallInProgressEvent(_InItem):
    type: Literal["response.web_search_call.in_progress"] = "response.web_search_call.in_progress"


class WebSearchCallSearchingEvent(_InItem):
    type: Literal["response.web_search_call.searching"] = "response.web_search_call.searching"


class WebSearchCallCompletedEvent(_InItem):
    type: Literal["response.web_search_call.completed"] = "response.web_search_call.completed"


class OutputTextAnnotationAddedEvent(_InItem):
    type: Literal["response.output_text.annotation.added"] = "response.output_text.annotation.added"
    content_index: int
    annotation_index: int
    annotation: dict[str, Any]


class ErrorEvent(_Event):
    """Flat, as the SDK expects: a nested `error` object would make the SDK raise instead of yielding it."""

    type: Literal["error"] = "error"
    code: str | None
    message: str
    param: str | None = None


StreamEvent = Union[
    ResponseCreatedEvent,
    ResponseInProgressEvent,
    ResponseCompletedEvent,
    ResponseIncompleteEvent,
    ResponseFailedEvent,
    OutputItemAddedEvent,
    OutputItemDoneEvent,
    ContentPartAddedEvent,
    ContentPartDoneEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    ReasoningTextDeltaEvent,
    ReasoningTextDoneEvent,
    ReasoningSummaryPartAddedEvent,
    ReasoningSummaryPartDoneEvent,
    ReasoningSummaryTextDeltaEvent,
    ReasoningSummaryTextDoneEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    WebSearchCallInProgressEvent,
    WebSearchCallSearchingEvent,
    WebSearchCallCompletedEvent,
    OutputTextAnnotationAddedEvent,
    ErrorEvent,
]
