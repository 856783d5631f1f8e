"""The serving core: GenerationRequest -> prompt ids + SamplingParams -> engine -> neutral events.

Owns prompt preparation (chat template rendering, the thinking policy, context-length checks, sampler params), the
life of one engine request (start, stream, abort on close) and usage accounting. Imports processor and
engine.request types; the engine is reached only through the small `AsyncEngine` protocol, so a scripted fake can
stand in for it. Must not import api/ or platform/.
Invariants: every exception that leaves is a `ServingError`; exactly one `Finished` per choice, the last one
carrying the request's `Usage`; closing a `Generation` early aborts its engine request; `Generation.usage` is
always the count of what was produced so far (billing reads it whatever the ending).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qwen35.engine.request import EngineOutput, MediaInput, SamplingParams
from qwen35.processor.grammar import CompiledAnswer, GrammarCompiler, GrammarError
from qwen35.processor.media import expand_media
from qwen35.processor.media_errors import MediaError
from qwen35.processor.output_parser import OutputParser
from qwen35.serving.choice import ChoiceConfig, ChoiceDecoder, TokenText
from qwen35.serving.errors import (
    ContextLengthExceededError,
    InternalError,
    InvalidRequestError,
    ServingError,
    from_engine_error,
)
from qwen35.serving.events import Finished, ServingEvent, TokenLogprob, Usage
from qwen35.serving.media import MediaResolver, media_parts, template_messages
from qwen35.serving.request import GenerationRequest, ToolSpec
from qwen35.serving.structured import answer_spec
from qwen35.serving.thinking import ThinkingPlan, fit_budget, resolve_thinking


class AsyncEngine(Protocol):
    """What the core needs from `qwen35.engine.async_engine.AsyncEngine`."""

    vocab_size: int
    max_model_len: int

    def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams,
        media: Sequence[MediaInput] = (),
    ) -> AsyncIterator[EngineOutput]: ...

    async def abort(self, request_id: str) -> None: ...


@dataclass(frozen=True)
class PreparedRequest:
    """A request ready for the engine: everything derived from the GenerationRequest, nothing run yet."""

    request: GenerationRequest
    prompt_token_ids: tuple[int, ...]
    params: SamplingParams
    thinking: bool
    tools: tuple[ToolSpec, ...]  # tools offered to the model (after tool_choice)
    media: tuple[MediaInput, ...] = ()  # media runs of the prompt (pixels for the vision tower)


class ServingCore:
    """Protocol-neutral generation over one engine and one processor (shared by every API family)."""

    def __init__(self, engine: AsyncEngine, processor: Any, *, max_model_len: int | None = None,
                 media: MediaResolver | None = None) -> None:
        self.engine = engine
        self.processor = processor
        # media need a vision tower in the engine and the checkpoint's image / video processors
        vision = getattr(processor, "vision", None) if getattr(engine, "supports_media", False) else None
        self.media = media or MediaResolver(vision)
        # what the playground may upload (and what /v1/capabilities reports)
        self.accepts_media = {"image": self.media.processor is not None, "video": self.media.processor is not None}
        self.tokenizer = processor.tokenizer
        self.max_model_len = int(max_model_len or engine.max_model_len)
        self._token_text = TokenText(self.tokenizer)
        self._think_end_id = int(self.tokenizer.special_ids.think_end)
        # <think>, </think>, <tool_call>, </tool_call> by id, looked up once: never judged by special flags
        self._control_ids: dict[int, str] = dict(self.tokenizer.special_ids.control_tags)
        self._wind_down_ids = tuple(processor.wind_down_ids())
        # xgrammar is imported and its token table built on the first constrained request only
        self.grammars = GrammarCompiler(self.tokenizer, int(engine.vocab_size), self.tokenizer.stop_token_ids)

    # -- preparation -------------------------------------------------------------------------------------------

    def prepare(self, req: GenerationRequest) -> PreparedRequest:
        """Render and validate without running anything. Raises ServingError."""
        prompt, plan, tools, media = self._prompt(req)
        room = self.max_model_len - len(prompt)
        if room <= 0:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, your "
                f"{'messages' if req.is_chat else 'prompt'} resulted in {len(prompt)} tokens.",
                param="messages" if req.is_chat else "prompt",
            )
        # max_tokens is clamped to the context left (never an error): finish_reason "length" tells the caller.
        max_tokens = room if req.max_tokens is None else min(req.max_tokens, room)
        # The generation starts inside <think> only if the rendered prompt really opened one (a checkpoint's own
        # template may differ); only then is there reasoning to parse and a budget to enforce.
        thinking = plan.enabled and self.processor.prompt_opens_reasoning(prompt)
        budget = None
        if thinking and plan.budget_tokens is not None:
            budget = fit_budget(plan.budget_tokens, max_tokens, self._think_end_id, self._wind_down_ids)
        grammar = self._grammar(req, tools, thinking)
        sampling = req.sampling
        stop_ids = tuple(dict.fromkeys([*self.tokenizer.stop_token_ids, *sampling.stop_token_ids]))
        params = SamplingParams(
            n=sampling.n,
            max_tokens=max_tokens,
            min_tokens=min(sampling.min_tokens, max_tokens),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            min_p=sampling.min_p,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            repetition_penalty=sampling.repetition_penalty,
            logit_bias=dict(sampling.logit_bias) if sampling.logit_bias else None,
            seed=sampling.seed,
            stop=None,  # text-level: matched here, never in the engine
            stop_token_ids=stop_ids,
            ignore_eos=sampling.ignore_eos,
            logprobs=req.logprobs,
            prompt_logprobs=req.prompt_logprobs,
            skip_special_tokens=req.skip_special_tokens,
            thinking_budget=budget,
            grammar=grammar,
        )
        return PreparedRequest(req, prompt, params, thinking, tools, media)

    def _grammar(self, req: GenerationRequest, tools: tuple[ToolSpec, ...], thinking: bool) -> CompiledAnswer | None:
        spec = answer_spec(req, tools, thinking)
        if spec is None:
            return None
        try:
            return self.grammars.compile(spec)
        except GrammarError as exc:
            raise InvalidRequestError(exc.message, param=exc.param) from exc

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        """Tokens of the rendered prompt, also when they exceed the context (count_tokens reports, never refuses)."""
        return len(self._prompt(req)[0])

    def _prompt(
        self, req: GenerationRequest
    ) -> tuple[tuple[int, ...], ThinkingPlan, tuple[ToolSpec, ...], tuple[MediaInput, ...]]:
        """The prompt ids (template rendered, media expanded), the thinking plan, the tools offered and the media
        runs; no length check."""
        tools = _offered_tools(req)
        media: tuple[MediaInput, ...] = ()
        if req.messages is not None:
            if req.prompt_token_ids is not None:
                raise InvalidRequestError("Send either messages or a prompt, not both", param="messages")
            plan = resolve_thinking(req.enable_thinking, req.reasoning_effort, req.thinking_budget, req.chat_template_kwargs)
            prompt, media = self._render(req, tools, plan.enabled)
        elif req.prompt_token_ids is not None:
            plan = resolve_thinking(False, None, None)
            prompt = tuple(int(t) for t in req.prompt_token_ids)
            if any(not 0 <= t < self.engine.vocab_size for t in prompt):
                raise InvalidRequestError("The prompt contains a token id outside the vocabulary", param="prompt")
        else:
            raise InvalidRequestError("A request needs messages or a prompt", param="messages")
        if not prompt:
            raise InvalidRequestError("The prompt is empty", param="prompt" if req.messages is None else "messages")
        return prompt, plan, tools, media


    def _render(
        self, req: GenerationRequest, tools: tuple[ToolSpec, ...], thinking: bool
    ) -> tuple[tuple[int, ...], tuple[MediaInput, ...]]:
        kwargs = {k: v for k, v in req.chat_template_kwargs.items() if k not in ("enable_thinking", "tools")}
        messages = req.messages or ()
        parts = media_parts(messages)
        loaded = self.media.load(parts)  # decoded (and fetched) before rendering: bad media fail first
        try:
            ids = self.processor.encode_chat(
                template_messages(messages),
                tools=[t.to_template() for t in tools] or None,
                add_generation_prompt=True,
                enable_thinking=thinking,
                **kwargs,
            )
        except ServingError:
            raise
        except Exception as exc:  # template raise_exception / bad message shapes are the caller's input
            raise InvalidRequestError(f"Invalid messages: {exc}", param="messages") from exc
        if not parts:
            return tuple(int(t) for t in ids), ()
        try:
            expanded, media = expand_media(ids, loaded.images, loaded.videos, self.tokenizer.special_ids,
                                           self.tokenizer, self.processor.vision.image_config.merge_size)
        except MediaError as exc:
            raise InvalidRequestError(exc.message, param=parts[0].param, code=exc.code) from exc
        return tuple(expanded), media

    # -- generation --------------------------------------------------------------------------------------------

    def generate(self, req: GenerationRequest | PreparedRequest) -> Generation:
        """Start a generation (lazily): iterate it for events, `await start()` to surface input errors first."""
        prepared = req if isinstance(req, PreparedRequest) else self.prepare(req)
        return Generation(self, prepared)

    def _decoders(self, prepared: PreparedRequest) -> list[ChoiceDecoder]:
        req = prepared.request
        config = ChoiceConfig(
            stop=tuple(req.sampling.stop),
            include_stop_str_in_output=req.sampling.include_stop_str_in_output,
            in_reasoning=prepared.thinking,
            think_end_id=self._think_end_id,
            raw_output=req.raw_output or not req.is_chat,
            skip_special_tokens=req.skip_special_tokens,
            tools=prepared.tools,
            num_logprobs=req.logprobs,
            parallel_tool_calls=req.parallel_tool_calls,
            control_ids=self._control_ids,
        )
        tool_dicts = [t.to_template() for t in prepared.tools]

        def make_parser() -> OutputParser:
            return OutputParser(tool_dicts, in_reasoning=prepared.thinking, control_ids=self._control_ids)

        return [ChoiceDecoder(i, config, self.tokenizer, self._token_text, make_parser) for i in range(req.sampling.n)]

    def token_logprob(self, token_id: int, candidates: dict[int, float], num_top: int) -> TokenLogprob:
        return self._token_text.logprob(token_id, candidates, num_top)


class Generation:
    """One running request: an async iterator of ServingEvents with live `usage` and `prompt_logprobs`."""

    def __init__(self, core: ServingCore, prepared: PreparedRequest) -> None:
        self.core = core
        self.prepared = prepared
        self.request_id = prepared.request.request_id
        self.prompt_token_ids = prepared.prompt_token_ids
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self._decoders = core._decoders(prepared)
        self._num_prompt_tokens = len(prepared.prompt_token_ids)
        self._num_cached_tokens = 0
        self._outputs: AsyncIterator[EngineOutput] | None = None
        self._first: EngineOutput | None = None
        self._pending_first: asyncio.Future[EngineOutput] | None = None  # start(wait_first=False) left it running
        self._events = self._run()
        self._engine_done = False
        self._closed = False

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=self._num_prompt_tokens,
            cached_input_tokens=min(self._num_cached_tokens, self._num_prompt_tokens),
            output_tokens=sum(d.num_output_tokens for d in self._decoders),
            reasoning_tokens=sum(d.num_reasoning_tokens for d in self._decoders),
        )

    @property
    def finished(self) -> bool:
        return all(d.finished for d in self._decoders)

    async def start(self, wait_first: bool = True) -> None:
        """Submit to the engine, so refusals (bad input, overload, context) raise here, before an API has sent any
        response bytes. The engine validates and admits before its first await, so one loop turn surfaces them;
        `wait_first` also waits for the first output (a stream does not: it answers at once and keeps alive)."""
        if self._outputs is not None:
            return
        if self._closed:
            raise InternalError("The generation was closed")
        params, prompt = self.prepared.params, list(self.prepared.prompt_token_ids)
        try:
            media = self.prepared.media
            self._outputs = (self.core.engine.generate(self.request_id, prompt, params, media) if media
                             else self.core.engine.generate(self.request_id, prompt, params))
            first = asyncio.ensure_future(self._outputs.__anext__())
            self._pending_first = first
            await asyncio.sleep(0)  # the engine's door: validation and admission run now
            if first.done() or wait_first:
                await self._take_first()
        except StopAsyncIteration:
            self._engine_done = True
        except BaseException as exc:
            await self._close_engine()
            if isinstance(exc, Exception):
                raise from_engine_error(exc) from exc
            raise

    async def _take_first(self) -> None:
        first, self._pending_first = self._pending_first, None
        if first is not None:
            self._first = await first
            self._absorb(self._first)

    def __aiter__(self) -> Generation:
        return self

    async def __anext__(self) -> ServingEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop early (client gone, all choices stopped): aborts the engine request and frees it."""
        self._closed = True
        await self._events.aclose()
        await self._close_engine()

    async def _run(self) -> AsyncGenerator[ServingEvent, None]:
        try:
            await self.start()
            while not self.finished:
                output = await self._next_output()
                if output is None:
                    break
                self._absorb(output)
                for delta in output.sequences:
                    if not 0 <= delta.index < len(self._decoders):
                        continue
                    decoder = self._decoders[delta.index]
                    was_running = not decoder.finished
                    for event in decoder.feed(delta):
                        yield self._with_usage(event)
                    if was_running and decoder.finished and delta.finish_reason is None and not self.finished:
                        self._finish_sample(delta.index)
                if output.error is not None:
                    raise InternalError(f"Generation failed: {output.error}")
            # the engine ended without finishing some choice (it was aborted elsewhere): end them honestly
            for decoder in self._decoders:
                for event in decoder.finish("abort"):
                    yield self._with_usage(event)
        finally:
            await self._close_engine()

    async def _next_output(self) -> EngineOutput | None:
        if self._pending_first is not None:
            try:
                await self._take_first()
            except StopAsyncIteration:
                self._engine_done = True
                return None
            except ServingError:
                raise
            except Exception as exc:
                raise from_engine_error(exc) from exc
        if self._first is not None:
            output, self._first = self._first, None
            return output
        if self._outputs is None or self._engine_done:
            return None
        try:
            return await self._outputs.__anext__()
        except StopAsyncIteration:
            self._engine_done = True
            return None
        except ServingError:
            raise
        except Exception as exc:
            raise from_engine_error(exc) from exc

    def _finish_sample(self, index: int) -> None:
        """A stop string ended one sample of several: let the engine stop it (the others go on)."""
        finish_sample = getattr(self.core.engine, "finish_sample", None)
        if finish_sample is not None:
            finish_sample(self.request_id, index)

    def _absorb(self, output: EngineOutput) -> None:
        self._num_prompt_tokens = output.num_prompt_tokens or self._num_prompt_tokens
        self._num_cached_tokens = max(self._num_cached_tokens, output.num_cached_tokens)
        if output.finished:
            self._engine_done = True
        if output.prompt_logprobs is not None and self.prompt_logprobs is None:
            self.prompt_logprobs = _prompt_logprobs(self.core, self.prompt_token_ids, output.prompt_logprobs)

    def _with_usage(self, event: ServingEvent) -> ServingEvent:
        if isinstance(event, Finished) and self.finished:
            return dataclasses.replace(event, usage=self.usage)
        return event

    async def _close_engine(self) -> None:
        pending, self._pending_first = self._pending_first, None
        if pending is not None and not pending.done():
            pending.cancel()  # the engine generator's own cleanup (abort) runs in it
            with contextlib.suppress(BaseException):
                await pending
        outputs, self._outputs = self._outputs, None
        if outputs is None:
            return
        try:
            await outputs.aclose()  # type: ignore[attr-defined]
        finally:
            if not self._engine_done:
                self._engine_done = True
                with contextlib.suppress(Exception):  # already gone is fine: abort is idempotent by intent
                    await self.core.engine.abort(self.request_id)


def _offered_tools(req: GenerationRequest) -> tuple[ToolSpec, ...]:
    if not req.tools or req.tool_choice.mode == "none":
        return ()
    if req.tool_choice.mode == "named":
        named = tuple(t for t in req.tools if t.name == req.tool_choice.name)
        if not named:
            raise InvalidRequestError(
                f"tool_choice names '{req.tool_choice.name}', which is not in tools", param="tool_choice"
            )
        return named
    return req.tools


def _prompt_logprobs(
    core: ServingCore, prompt: Sequence[int], raw: Sequence[dict[int, float] | None]
) -> list[TokenLogprob | None]:
    out: list[TokenLogprob | None] = []
    for position, token_id in enumerate(prompt):
        candidates = raw[position] if position < len(raw) else None
        out.append(None if candidates is None else core.token_logprob(token_id, candidates, len(candidates)))
    return out
