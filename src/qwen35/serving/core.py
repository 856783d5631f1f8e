"""The serving core: GenerationRequest -> prompt ids + SamplingParams -> engine -> neutral events.

Owns prompt preparation (chat template rendering, the thinking policy, context-length checks, sampler params), the
life of one generation (start, stream, abort on close; with web search, several engine requests in rounds driven
by `serving.search_loop`) and usage accounting. Imports processor and
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
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

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
from qwen35.serving.request import GenerationRequest, ToolChoice, ToolSpec
from qwen35.serving.search_loop import SearchGate, SearchLoop
from qwen35.serving.structured import answer_spec
from qwen35.serving.thinking import ThinkingPlan, fit_budget, resolve_thinking
from qwen35.serving.web_search import TOOL_NAME, WebSearchService, tool_spec

T = TypeVar("T")

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
    thinking_budget_tokens: int | None = None  # the requested reasoning budget (before fitting into max_tokens)


class ServingCore:
    """Protocol-neutral generation over one engine and one processor (shared by every API family)."""

    def __init__(self, engine: AsyncEngine, processor: Any, *, max_model_len: int | None = None,
                 media: MediaResolver | None = None, web_search: WebSearchService | None = None) -> None:
        self.engine = engine
        self.web_search = web_search  # the server-run search tool; None: requests asking for it are refused
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
        if req.web_search is not None and req.sampling.n > 1:
            raise InvalidRequestError("Web search runs with one choice only (n = 1)", param="n")
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
        params = self._params(req, max_tokens, budget, grammar)
        return PreparedRequest(req, prompt, params, thinking, tools, media,
                               plan.budget_tokens if thinking else None)

    def _params(
        self, req: GenerationRequest, max_tokens: int, budget: Any, grammar: CompiledAnswer | None
    ) -> SamplingParams:
        sampling = req.sampling
        stop_ids = tuple(dict.fromkeys([*self.tokenizer.stop_token_ids, *sampling.stop_token_ids]))
        return SamplingParams(
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
        tools = _offered_tools(req, self._search_tools(req))
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


    def _search_tools(self, req: GenerationRequest) -> tuple[ToolSpec, ...]:
        if req.web_search is None:
            return ()
        if self.web_search is None:
            raise InvalidRequestError(
                "Web search is not enabled on this server (start it with a Linkup API key: LINKUP_API_KEY or "
                "qwen35 serve --linkup-api-key)", param=req.web_search.param, code="web_search_unavailable")
        if any(t.name == TOOL_NAME for t in req.tools):
            raise InvalidRequestError(
                f"A function tool may not be named '{TOOL_NAME}' while web search is on", param="tools")
        return (tool_spec(req.web_search),)

    def next_round(self, prepared: PreparedRequest, prompt: Sequence[int], usage: Usage,
                   searching: bool) -> PreparedRequest | None:
        """The next round of a web search loop: the previous prompt, its output and the tool responses as
        `prompt` (the previous round is a prefix of it: the prefix cache reuses it). max_tokens and the thinking
        budget are what the earlier rounds left; web_search stays offered while `searching`. None: no room left
        (max_tokens or the context is used up)."""
        req = prepared.request
        room = self.max_model_len - len(prompt)
        left = room if req.max_tokens is None else min(req.max_tokens - usage.output_tokens, room)
        if left <= 0:
            return None
        # web_search calls are still parsed when no search is left (the model is told so), never enforced
        client = tuple(t for t in prepared.tools if t.name != TOOL_NAME)
        enforced = prepared.tools if searching else client
        choice = req.tool_choice
        if not searching and choice.mode == "named" and choice.name == TOOL_NAME:
            choice = ToolChoice("auto" if client else "none")
        round_req = dataclasses.replace(req, tool_choice=choice)
        budget = None
        thinking = prepared.thinking_budget_tokens is not None and thinking_left(prepared, usage) > 0
        if thinking:
            budget = fit_budget(thinking_left(prepared, usage), left, self._think_end_id, self._wind_down_ids)
        grammar = self._grammar(round_req, enforced, thinking) if enforced and choice.mode != "none" else None
        params = self._params(round_req, left, budget, grammar)
        params = dataclasses.replace(params, min_tokens=max(0, params.min_tokens - usage.output_tokens),
                                     tenant=prepared.params.tenant)
        return PreparedRequest(round_req, tuple(prompt), params, thinking, prepared.tools, (),
                               prepared.thinking_budget_tokens)

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

    def generate(self, req: GenerationRequest | PreparedRequest, search_gate: SearchGate | None = None) -> Generation:
        """Start a generation (lazily): iterate it for events, `await start()` to surface input errors first.
        `search_gate` is asked before each web search (billing: the account must cover the fee)."""
        prepared = req if isinstance(req, PreparedRequest) else self.prepare(req)
        return Generation(self, prepared, search_gate)

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
    """One running request: an async iterator of ServingEvents with live `usage` and `prompt_logprobs`.

    With web search on, a request runs in rounds: a round whose answer is web_search calls (and no client tool
    calls) is not finished; the searches run (`SearchLoop`), the round's prompt + output + tool responses become
    the next round's prompt (its prefix is in the prefix cache) and generation goes on, up to `max_uses` searches.
    Usage sums every round (each round is one model call: its prompt, cached tokens and output)."""

    def __init__(self, core: ServingCore, prepared: PreparedRequest, search_gate: SearchGate | None = None) -> None:
        self.core = core
        self.prepared = prepared
        self.request_id = prepared.request.request_id
        self.prompt_token_ids = prepared.prompt_token_ids
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        options = prepared.request.web_search
        self._loop = (SearchLoop(core.web_search, options, search_gate)
                      if options is not None and core.web_search is not None else None)
        self._round = prepared
        self._num_rounds = 1
        self._engine_id = self.request_id
        self._earlier = Usage(0, 0, 0, 0)  # the finished rounds
        self._round_ids: list[int] = []  # tokens the current round generated (the next round's prompt needs them)
        self._rounds_done = self._loop is None
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
        earlier = self._earlier
        return Usage(
            input_tokens=earlier.input_tokens + self._num_prompt_tokens,
            cached_input_tokens=earlier.cached_input_tokens + min(self._num_cached_tokens, self._num_prompt_tokens),
            output_tokens=earlier.output_tokens + sum(d.num_output_tokens for d in self._decoders),
            reasoning_tokens=earlier.reasoning_tokens + sum(d.num_reasoning_tokens for d in self._decoders),
            web_search_calls=self._loop.num_billed if self._loop is not None else 0,
        )

    @property
    def num_rounds(self) -> int:
        """Model calls made so far (1 without web search)."""
        return self._num_rounds

    @property
    def finished(self) -> bool:
        return self._rounds_done and self._round_finished

    @property
    def _round_finished(self) -> bool:
        return all(d.finished for d in self._decoders)

    async def start(self, wait_first: bool = True) -> None:
        """Submit to the engine, so refusals (bad input, overload, context) raise here, before an API has sent any
        response bytes. The engine validates and admits before its first await, so one loop turn surfaces them;
        `wait_first` also waits for the first output (a stream does not: it answers at once and keeps alive)."""
        if self._outputs is not None:
            return
        if self._closed:
            raise InternalError("The generation was closed")
        params, prompt = self._round.params, list(self._round.prompt_token_ids)
        try:
            media = self._round.media
            self._outputs = (self.core.engine.generate(self._engine_id, prompt, params, media) if media
                             else self.core.engine.generate(self._engine_id, prompt, params))
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
            while True:
                async for event in self._round_events():
                    yield event
                loop = self._loop
                if loop is None or loop.held is None:
                    break
                if loop.should_run:
                    for result in await loop.run(0):
                        yield result
                    if loop.continues:
                        if await self._next_round():
                            continue
                        assert loop.held is not None
                        loop.held = dataclasses.replace(loop.held, reason="length")  # no room for another round
                self._rounds_done = True
                for event in loop.finish_held():
                    yield self._with_usage(event)
                return
            # the engine ended without finishing some choice (it was aborted elsewhere): end them honestly
            self._rounds_done = True
            for decoder in self._decoders:
                for event in decoder.finish("abort"):
                    for out in self._sort(event):
                        yield self._with_usage(out)
            if self._loop is not None:
                for event in self._loop.finish_held():
                    yield self._with_usage(event)
        finally:
            await self._close_engine()

    async def _round_events(self) -> AsyncGenerator[ServingEvent, None]:
        """One engine request's events (the whole generation without web search)."""
        while not self._round_finished:
            output = await self._next_output()
            if output is None:
                break
            self._absorb(output)
            for delta in output.sequences:
                if not 0 <= delta.index < len(self._decoders):
                    continue
                decoder = self._decoders[delta.index]
                was_running = not decoder.finished
                if self._loop is not None and was_running:
                    stop = delta.stop_token_id
                    self._round_ids.extend(t for i, t in enumerate(delta.new_token_ids)
                                           if not (stop is not None and t == stop and i == len(delta.new_token_ids) - 1))
                for event in decoder.feed(delta):
                    for out in self._sort(event):
                        yield self._with_usage(out)
                if was_running and decoder.finished and delta.finish_reason is None and not self._round_finished:
                    self._finish_sample(delta.index)
            if output.error is not None:
                raise InternalError(f"Generation failed: {output.error}")

    def _sort(self, event: ServingEvent) -> list[ServingEvent]:
        if self._loop is None:
            return [event]
        out = self._loop.sort(event)
        if any(isinstance(e, Finished) for e in out):
            self._rounds_done = True  # a Finished the loop let through ends the request (n == 1)
        return out

    async def _next_round(self) -> bool:
        """Start the round after a round of searches; False when max_tokens or the context has no room left."""
        assert self._loop is not None
        core, usage = self.core, self.usage
        thinking = self._round.thinking_budget_tokens is not None and thinking_left(self._round, usage) > 0
        tail = self._loop.continuation(core.tokenizer.special_ids, core.tokenizer.encode, thinking)
        prompt = [*self._round.prompt_token_ids, *self._round_ids, *tail]
        prepared = core.next_round(self._round, prompt, usage, self._loop.searching)
        if prepared is None:
            return False
        await self._close_engine()
        self._earlier = dataclasses.replace(usage, web_search_calls=0)
        self._round, self._round_ids = prepared, []
        self._num_rounds += 1
        self._engine_id = f"{self.request_id}-r{self._num_rounds}"
        self._decoders = core._decoders(prepared)
        self._num_prompt_tokens, self._num_cached_tokens = len(prompt), 0
        self._outputs, self._first, self._engine_done = None, None, False
        self._loop.begin_round()
        await self.start()
        return True

    async def _next_output(self) -> EngineOutput | None:
        if self._pending_first is not None:
            await self._engine_call(self._take_first())
            if self._first is None:  # the engine's stream ended before any output
                return None
        if self._first is not None:
            output, self._first = self._first, None
            return output
        if self._outputs is None or self._engine_done:
            return None
        return await self._engine_call(self._outputs.__anext__())

    async def _engine_call(self, step: Awaitable[T]) -> T | None:
        """Await one engine step: None when the engine's stream ended; its errors as ServingErrors."""
        try:
            return await step
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
            finish_sample(self._engine_id, index)

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
                    await self.core.engine.abort(self._engine_id)


def thinking_left(prepared: PreparedRequest, usage: Usage) -> int:
    """Reasoning tokens the request's budget still allows after the rounds counted in `usage`."""
    return (prepared.thinking_budget_tokens or 0) - usage.reasoning_tokens


def _offered_tools(req: GenerationRequest, server_tools: tuple[ToolSpec, ...] = ()) -> tuple[ToolSpec, ...]:
    candidates = (*req.tools, *server_tools)
    if not candidates or req.tool_choice.mode == "none":
        return ()
    if req.tool_choice.mode == "named":
        named = tuple(t for t in candidates if t.name == req.tool_choice.name)
        if not named:
            raise InvalidRequestError(
                f"tool_choice names '{req.tool_choice.name}', which is not in tools", param="tool_choice"
            )
        return named
    return candidates


def _prompt_logprobs(
    core: ServingCore, prompt: Sequence[int], raw: Sequence[dict[int, float] | None]
) -> list[TokenLogprob | None]:
    out: list[TokenLogprob | None] = []
    for position, token_id in enumerate(prompt):
        candidates = raw[position] if position < len(raw) else None
        out.append(None if candidates is None else core.token_logprob(token_id, candidates, len(candidates)))
    return out
