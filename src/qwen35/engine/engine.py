"""The synchronous engine: step = schedule -> run -> update.

Owns validation at the door (`validate`: the prompt and the one `SamplingParams.validate` call of a request;
`check_admission`: duplicate ids and a full queue) and the loop itself. Request and sequence bookkeeping, stop
conditions, the thinking budget and forks are the scheduler's; the forward pass and sampling are the runner's.
Sees token ids only. Invariant: when a request finishes or is aborted, every KV block and state slot it held is
free the same step.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

from qwen35.engine.cache import BlockPool, SlotPool
from qwen35.engine.prefix_cache import PrefixCache
from qwen35.engine.request import (
    ContextLengthError,
    EngineError,
    EngineOutput,
    EngineOverloadedError,
    MediaInput,
    SamplingParams,
)
from qwen35.engine.runner import ModelRunner
from qwen35.engine.scheduler import Scheduler
from qwen35.engine.sequence import RequestState


@dataclass(frozen=True)
class EngineConfig:
    max_model_len: int
    eos_token_ids: tuple[int, ...]
    max_num_seqs: int = 16
    max_num_batched_tokens: int = 512
    block_size: int = 16
    num_kv_blocks: int = 1024
    num_state_slots: int = 16
    max_waiting: int = 512
    num_prefix_checkpoints: int = 0  # 0 disables automatic prefix caching


@dataclass(frozen=True)
class EngineStats:
    """Occupancy of one engine: queues, KV blocks and DeltaNet state slots, prefix-cache counters."""

    waiting: int
    running: int
    kv_blocks_total: int
    kv_blocks_used: int  # owned by a sequence (cached blocks without an owner are free: they can be evicted)
    state_slots_total: int
    state_slots_used: int
    prefix_cache_queries: int
    prefix_cache_hits: int
    prefix_cache_hit_tokens: int
    preemptions: int


class LLMEngine:
    def __init__(self, runner: ModelRunner, config: EngineConfig, model_dir: Path | None = None) -> None:
        self.runner = runner
        self.model_dir = model_dir  # the resolved checkpoint (None for dummy weights on a hub id)
        self.config = config
        self.vocab_size = runner.vocab_size
        self.max_model_len = config.max_model_len
        self.blocks = BlockPool(config.num_kv_blocks, config.block_size)
        self.slots = SlotPool(config.num_state_slots)
        self.prefix_cache = PrefixCache(self.blocks, config.num_prefix_checkpoints)
        self.scheduler = Scheduler(
            self.blocks, self.slots, config.max_num_seqs, config.max_num_batched_tokens,
            self.prefix_cache if self.prefix_cache.enabled else None,
            eos_token_ids=config.eos_token_ids, max_model_len=config.max_model_len,
        )

    @property
    def requests(self) -> dict[str, RequestState]:
        """Unfinished requests by id (owned by the scheduler)."""
        return self.scheduler.requests

    def stats(self) -> EngineStats:
        cache = self.prefix_cache.stats()
        return EngineStats(
            waiting=len(self.scheduler.waiting), running=len(self.scheduler.running),
            kv_blocks_total=self.config.num_kv_blocks, kv_blocks_used=self.config.num_kv_blocks - self.blocks.num_free,
            state_slots_total=self.config.num_state_slots,
            state_slots_used=self.config.num_state_slots - self.slots.num_free,
            prefix_cache_queries=cache["queries"], prefix_cache_hits=cache["hits"],
            prefix_cache_hit_tokens=cache["hit_tokens"], preemptions=self.scheduler.num_preemptions,
        )

    # ---- admission -------------------------------------------------------------------------------------------
    def validate(self, prompt_token_ids: Seq[int], params: SamplingParams, media: Seq[MediaInput] = ()) -> None:
        """Raise a typed error (naming the parameter) for input the engine must refuse; mutates nothing.

        The one place a request's SamplingParams are validated: callers above the engine catch the EngineError."""
        if len(prompt_token_ids) == 0:
            raise EngineError("prompt must contain at least one token", "prompt")
        if any(not isinstance(t, int) or not 0 <= t < self.vocab_size for t in prompt_token_ids):
            raise EngineError(f"prompt token ids must be integers in [0, {self.vocab_size})", "prompt")
        params.validate(self.vocab_size)
        num_prompt = len(prompt_token_ids)
        if num_prompt >= self.max_model_len:
            raise ContextLengthError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, your prompt has "
                f"{num_prompt} tokens, leaving no room for output."
            )
        if params.max_tokens is not None and num_prompt + params.max_tokens > self.max_model_len:
            raise ContextLengthError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{num_prompt + params.max_tokens} tokens ({num_prompt} in the prompt, {params.max_tokens} for the "
                "completion). Please reduce the prompt or max_tokens."
            )
        self._validate_media(len(prompt_token_ids), media)
        if params.n > self.config.num_state_slots:
            raise EngineError(f"n must be at most {self.config.num_state_slots} on this server", "n")
        # Admission keeps a spare block per extra sample (copy-on-write at the fork): refuse what could never start.
        if self.blocks.blocks_needed(num_prompt, 0) + params.n - 1 > self.config.num_kv_blocks:
            raise EngineError(f"n={params.n} samples of a {num_prompt}-token prompt do not fit the KV cache", "n")

    def _validate_media(self, num_prompt: int, media: Seq[MediaInput]) -> None:
        if not media:
            return
        patch_dim = self.runner.vision_patch_dim
        if patch_dim is None:
            raise EngineError("this model has no vision tower: image and video input are not supported", "messages")
        end = 0
        for item in media:
            t, h, w = item.grid
            shape = getattr(item.patches, "shape", None)
            if item.offset < end or item.end > num_prompt or h % item.merge_size or w % item.merge_size:
                raise EngineError("media placeholders must be disjoint runs inside the prompt", "messages")
            if shape != (t * h * w, patch_dim):
                raise EngineError(f"media patches must have shape ({t * h * w}, {patch_dim})", "messages")
            end = item.end

    def check_admission(self, request_id: str) -> None:
        """Refuse a duplicate request id or a full queue (state that changes between steps: checked again when
        the request is queued)."""
        if request_id in self.scheduler.requests:
            raise EngineError(f"request id {request_id!r} is already running", "request_id")
        if self.scheduler.num_unfinished >= self.config.max_waiting:
            raise EngineOverloadedError("the engine queue is full; retry later")

    def admit(self, request_id: str, prompt_token_ids: Seq[int], params: SamplingParams,
              media: Seq[MediaInput] = ()) -> None:
        """Queue a request that passed `validate` (admission is checked here)."""
        self.check_admission(request_id)
        self.scheduler.add_request(request_id, prompt_token_ids, params, media)

    def add_request(self, request_id: str, prompt_token_ids: Seq[int], params: SamplingParams,
                    media: Seq[MediaInput] = ()) -> None:
        self.validate(prompt_token_ids, params, media)
        self.admit(request_id, prompt_token_ids, params, media)

    def abort_request(self, request_id: str) -> bool:
        return self.scheduler.abort_request(request_id)

    def finish_sample(self, request_id: str, index: int) -> EngineOutput | None:
        """End one sample early (a stop string matched above the engine); the final output when the request is
        done with it."""
        return self.scheduler.finish_sample(request_id, index)

    def has_unfinished(self) -> bool:
        return bool(self.scheduler.requests)

    # ---- the step ----------------------------------------------------------------------------------------------
    def step(self) -> list[EngineOutput]:
        scheduler_output = self.scheduler.schedule()
        runner_output = self.runner.execute(scheduler_output)
        return self.scheduler.update(scheduler_output, runner_output)
