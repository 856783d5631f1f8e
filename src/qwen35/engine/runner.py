"""Model runner: executes a SchedulerOutput (one forward pass, cache copies, sampling) into a plain RunnerOutput.

The only engine module that imports the model; `engine.build` loads the model and allocates the cache through it.
Owns the cache tensors (`ModelCache`), the flat batch layout (input ids, three-stream positions, slot mapping),
media embeddings (each run encoded by the vision tower once per sequence and kept until its prefill has passed
it, so a chunk boundary inside an image is exact), per-sample seeded generators and prompt-logprob computation.
Invariants: logits are computed only for rows that sample or that asked for prompt logprobs; the runner reads the
scheduler's sequences and never writes them (all bookkeeping is `Scheduler.update`'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qwen35.engine.memory import MemoryInfo, host_memory
from qwen35.engine.penalties import unpack_bitmask
from qwen35.engine.request import MediaInput, TokenLogprobs
from qwen35.engine.sampler import SamplingRow, make_generator, prompt_logprobs, sample
from qwen35.engine.scheduler import RunnerOutput, ScheduledSequence, SchedulerOutput
from qwen35.engine.sequence import Sequence
from qwen35.model.attention import BATCHED_DECODE_MAX_CONTEXT
from qwen35.model.batch import ForwardBatch, ModelCache
from qwen35.model.config import ModelConfig
from qwen35.model.kernels.build import library
from qwen35.model.mrope import Span, media_positions
from qwen35.model.qwen35 import Qwen35ForCausalLM
from qwen35.model.weights import (
    DEFAULT_CPU_QUANTIZATION,
    build_model,
    load_config,
    parse_dtype,
    resolve_checkpoint,
)


@dataclass
class _StepLogits:
    logits: torch.Tensor  # [rows, V] float32: sampling rows and prompt-logprob rows
    row_of: dict[int, int]  # seq_id of a completing sequence -> its row
    prompt_logprobs: dict[int, list[TokenLogprobs]]  # seq_id -> logprobs of the prompt positions this chunk covers


class ModelRunner:
    def __init__(
        self,
        model: Qwen35ForCausalLM,
        cache: ModelCache,
        eos_token_ids: tuple[int, ...],
        device: torch.device | str = "cpu",
    ) -> None:
        self.model = model
        self.eos_token_ids = eos_token_ids
        self.cache = cache
        self.device = torch.device(device)
        self.vocab_size = model.config.vocab_size
        self._generators: dict[int, torch.Generator] = {}  # seq_id -> its seeded generator
        self._media_embeds: dict[int, dict[int, torch.Tensor]] = {}  # seq_id -> media index -> [tokens, hidden]
        # Decode steps of a model whose products run in the compiled kernels (their own pool of threads, one per
        # core) give torch one thread: its OpenMP team would otherwise wake for small ops and compete with the
        # pool for the cores (measured on 2 cores: batch 8 steps 15% faster, batch 1 4%). Other steps, and the
        # caller between steps, keep the caller's count.
        self._decode_threads: int | None = None
        if (self.device.type == "cpu" and getattr(model, "quantization", "none") != "none"
                and library() is not None):  # loaded now: its pool takes the thread count of this moment
            self._decode_threads = 1

    @property
    def weight_format(self) -> str:
        """The weights' format, e.g. "int8 (rest float32)" or "float32"."""
        fmt = str(getattr(self.model, "quantization", "none"))
        dtype = str(self.model.language_model.norm.weight.dtype).removeprefix("torch.")
        return dtype if fmt == "none" else f"{fmt} (rest {dtype})"

    @property
    def vision_patch_dim(self) -> int | None:
        """Values per media patch the vision tower takes; None when the model has no vision tower."""
        visual = self.model.visual
        return None if visual is None else visual.config.patch_dim

    def execute(self, out: SchedulerOutput) -> RunnerOutput:
        """Run one scheduled step: cache resets and restores, the forward pass, prefix checkpoint saves, fork
        copies, then sampling (forked children from their parent's row). Reads sequences, never writes them."""
        for seq_id in out.finished_seq_ids:
            self._generators.pop(seq_id, None)
            self._media_embeds.pop(seq_id, None)
        if out.is_empty:
            return RunnerOutput(sampled_token_ids=[], logprobs=[])
        decode_only = all(item.num_new_tokens == 1 for item in out.scheduled)
        threads = torch.get_num_threads()
        if decode_only and self._decode_threads is not None and self._decode_threads != threads:
            torch.set_num_threads(self._decode_threads)
        try:
            step = self.forward(out)
            for slot, checkpoint in out.saves:
                self.cache.save_checkpoint(slot, checkpoint)
            for src, dst in out.block_copies:
                self.cache.copy_block(src, dst)
            for src, dst in out.slot_copies:
                self.cache.copy_slot(src, dst)
            token_ids, logprobs = self.sample(step, out)
        finally:  # the caller's setting again (an offline user's own torch code runs between steps)
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        return RunnerOutput(sampled_token_ids=token_ids, logprobs=logprobs, prompt_logprobs=step.prompt_logprobs)

    def _generator(self, seq: Sequence) -> torch.Generator | None:
        if seq.params.seed is None:
            return None
        gen = self._generators.get(seq.seq_id)
        if gen is None:
            gen = make_generator(seq.params.seed, seq.sample_index, self.device)
            self._generators[seq.seq_id] = gen
        return gen

    def _build_batch(self, scheduled: list[ScheduledSequence]) -> ForwardBatch:
        ids: list[int] = []
        pos: list[int] = []
        media_pos: dict[int, torch.Tensor] = {}  # batch index -> [3, n] positions of a sequence with media
        slots: list[int] = []
        state_slots: list[int] = []
        block_size = self.cache.block_size
        for k, item in enumerate(scheduled):
            seq, start = item.seq, item.seq.num_computed_tokens
            end = start + item.num_new_tokens
            tokens = seq.token_ids()
            ids.extend(tokens[start:end])
            positions = range(start, end)
            pos.extend(positions)
            if seq.media:
                media_pos[k] = media_positions(_spans(seq.media), start, end, self.device)
            table = seq.block_table
            slots.extend(table[p // block_size] * block_size + p % block_size for p in positions)
            assert seq.state_slot is not None, "a scheduled sequence holds a state slot"
            state_slots.append(seq.state_slot)
        positions_t = torch.tensor(pos, dtype=torch.long, device=self.device).unsqueeze(0).expand(3, -1)
        if media_pos:  # text alone keeps the three MRoPE streams equal; media rows get their 3-D positions
            positions_t = positions_t.clone()
            offset = 0
            for k, item in enumerate(scheduled):
                if k in media_pos:
                    positions_t[:, offset : offset + item.num_new_tokens] = media_pos[k]
                offset += item.num_new_tokens
        input_ids = torch.tensor(ids, dtype=torch.long, device=self.device)
        return ForwardBatch(
            input_ids=input_ids,
            positions=positions_t,
            query_lens=[s.num_new_tokens for s in scheduled],
            context_lens=[s.seq.num_computed_tokens + s.num_new_tokens for s in scheduled],
            block_tables=[s.seq.block_table for s in scheduled],
            state_slots=state_slots,
            slot_mapping=torch.tensor(slots, dtype=torch.long, device=self.device),
            input_embeds=self._input_embeds(scheduled, input_ids),
        )

    @torch.inference_mode()
    def _input_embeds(self, scheduled: list[ScheduledSequence], input_ids: torch.Tensor) -> torch.Tensor | None:
        """Token embeddings with the media rows of this step's chunks replaced by vision-tower embeddings; None
        when no chunk overlaps a media run (the model embeds the ids itself)."""
        overlaps: list[tuple[int, Sequence, int, int]] = []  # (batch row of the chunk start, seq, start, end)
        row = 0
        for item in scheduled:
            seq, start = item.seq, item.seq.num_computed_tokens
            end = start + item.num_new_tokens
            if any(m.offset < end and m.end > start for m in seq.media):
                overlaps.append((row, seq, start, end))
            row += item.num_new_tokens
        if not overlaps:
            return None
        self._encode_missing([(seq, start, end) for _, seq, start, end in overlaps])
        x = self.model.embed_tokens(input_ids)
        for row, seq, start, end in overlaps:
            embeds = self._media_embeds[seq.seq_id]
            for index, media in enumerate(seq.media):
                lo, hi = max(start, media.offset), min(end, media.end)
                if lo < hi:
                    x[row + lo - start : row + hi - start] = embeds[index][lo - media.offset : hi - media.offset]
            if end >= seq.media[-1].end:  # prefill is past the last run: its embeddings are no longer needed
                self._media_embeds.pop(seq.seq_id, None)
        return x

    def _encode_missing(self, chunks: list[tuple[Sequence, int, int]]) -> None:
        """Run the vision tower once over every media run these chunks need and no earlier step encoded."""
        todo: list[tuple[Sequence, int, MediaInput]] = []
        for seq, start, end in chunks:
            have = self._media_embeds.setdefault(seq.seq_id, {})
            todo.extend((seq, i, m) for i, m in enumerate(seq.media)
                        if m.offset < end and m.end > start and i not in have)
        if not todo:
            return
        patches = torch.from_numpy(np.concatenate([np.asarray(m.patches, dtype=np.float32) for _, _, m in todo]))
        embeds = self.model.encode_media(patches.to(self.device), [m.grid for _, _, m in todo])
        for (seq, index, _), rows in zip(todo, torch.split(embeds, [m.num_tokens for _, _, m in todo])):
            self._media_embeds[seq.seq_id][index] = rows

    def forward(self, out: SchedulerOutput) -> _StepLogits:
        """Run the model over the scheduled tokens; keep logits of sampling rows and prompt-logprob rows."""
        scheduled = out.scheduled
        self.cache.reset_slots(out.fresh_slots)
        for checkpoint, slot in out.restores:
            self.cache.load_checkpoint(checkpoint, slot)
        batch = self._build_batch(scheduled)
        rows: list[int] = []
        row_of: dict[int, int] = {}
        prompt_rows: list[tuple[Sequence, int, int]] = []  # (sequence, first row, count)
        offset = 0
        for item in scheduled:
            seq = item.seq
            if seq.params.prompt_logprobs is not None and seq.num_computed_tokens < seq.num_prompt_tokens - 1:
                # Positions predicting prompt tokens 1..P-1 that this chunk covers.
                last = min(seq.num_computed_tokens + item.num_new_tokens, seq.num_prompt_tokens - 1)
                count = last - seq.num_computed_tokens
                prompt_rows.append((seq, len(rows), count))
                rows.extend(range(offset, offset + count))
            if item.completes:
                row_of[seq.seq_id] = len(rows)
                rows.append(offset + item.num_new_tokens - 1)
            offset += item.num_new_tokens
        logits = self.model(batch, self.cache, torch.tensor(rows, dtype=torch.long, device=self.device))
        prompt_lps = {
            seq.seq_id: self._prompt_logprobs(seq, logits[first : first + count]) for seq, first, count in prompt_rows
        }
        return _StepLogits(logits=logits, row_of=row_of, prompt_logprobs=prompt_lps)

    def sample(self, step: _StepLogits, out: SchedulerOutput) -> tuple[list[int], list[TokenLogprobs | None]]:
        """Sample every completing sequence and its forked children (from the parent's logits row), in the order
        of `out.samplers`."""
        seqs: list[Sequence] = []
        logit_index: list[int] = []
        for item in out.scheduled:
            if not item.completes:
                continue
            for seq in (item.seq, *item.children):
                seqs.append(seq)
                logit_index.append(step.row_of[item.seq.seq_id])
        if not seqs:
            return [], []
        masks = self._grammar_masks(seqs)
        sample_rows = [self._sampling_row(seq, masks.get(i)) for i, seq in enumerate(seqs)]
        result = sample(step.logits[torch.tensor(logit_index, device=step.logits.device)], sample_rows)
        return result.token_ids, result.logprobs

    def _grammar_masks(self, seqs: list[Sequence]) -> dict[int, torch.Tensor]:
        """Allowed-token masks (bool [V]) of the rows whose next token a grammar constrains, filled in one bitmask."""
        rows = [i for i, seq in enumerate(seqs) if seq.grammar_active and not seq.forced_token_ids]
        if not rows:
            return {}
        bitmask = torch.zeros((len(rows), (self.vocab_size + 31) // 32), dtype=torch.int32)
        for k, i in enumerate(rows):
            grammar = seqs[i].grammar
            assert grammar is not None
            grammar.fill_bitmask(bitmask, k)
        allowed = unpack_bitmask(bitmask.to(self.device), self.vocab_size)
        return {i: allowed[k] for k, i in enumerate(rows)}

    def _sampling_row(self, seq: Sequence, allowed: torch.Tensor | None) -> SamplingRow:
        params = seq.params
        banned: list[int] = []
        if len(seq.output_token_ids) < params.min_tokens:
            banned = list(params.stop_token_ids or ()) + ([] if params.ignore_eos else list(self.eos_token_ids))
        return SamplingRow(
            params=params,
            prompt_token_ids=seq.prompt_token_ids,
            output_token_ids=seq.output_token_ids,
            generator=self._generator(seq),
            allowed_mask=allowed,
            banned_token_ids=banned,
            forced_token_id=seq.forced_token_ids[0] if seq.forced_token_ids else None,
        )

    @staticmethod
    def _prompt_logprobs(seq: Sequence, logits: torch.Tensor) -> list[TokenLogprobs]:
        start = seq.num_computed_tokens
        targets = torch.tensor(seq.prompt_token_ids[start + 1 : start + 1 + logits.shape[0]], device=logits.device)
        return prompt_logprobs(logits, targets, seq.params.prompt_logprobs or 0)


def _spans(media: tuple[MediaInput, ...]) -> list[Span]:
    return [(m.offset, *m.merged_hw) for m in media]


@dataclass(frozen=True)
class LoadedModel:
    model: Qwen35ForCausalLM
    config: ModelConfig
    model_dir: Path | None
    dtype: torch.dtype
    device: torch.device
    quantization: str = "none"


def resolve_quantization(quantization: str | None, dtype: str | None, device: str) -> str:
    """The weight format: as asked; by default int8 on CPU (weight reads bound decode there) unless a dtype was
    given explicitly (an explicit float32 stays the exact path), none on CUDA."""
    if quantization is not None:
        return quantization
    return DEFAULT_CPU_QUANTIZATION if device.startswith("cpu") and dtype in (None, "auto") else "none"


def load_model(
    model: str, dummy_weights: bool = False, dtype: str | None = None, device: str | None = None, progress: bool = True,
    quantization: str | None = None,
) -> LoadedModel:
    """Resolve a checkpoint (local dir or hub id) and build the model; dummy weights need no download."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = parse_dtype(dtype, device)
    fmt = resolve_quantization(quantization, dtype, device)
    model_dir = resolve_checkpoint(model, download=not dummy_weights)
    config = load_config(model_dir)
    net = build_model(model_dir, config, torch_dtype, device, dummy_weights=dummy_weights, progress=progress,
                      quantization=fmt)
    return LoadedModel(net, config, model_dir, torch_dtype, torch.device(device), fmt)


def build_runner(
    loaded: LoadedModel,
    *,
    num_blocks: int,
    block_size: int,
    num_state_slots: int,
    num_checkpoints: int,
    eos_token_ids: tuple[int, ...],
    kv_cache_dtype: str | None = None,
) -> ModelRunner:
    """The runner of a loaded model, its cache tensors allocated once."""
    cache = ModelCache(loaded.config.text, num_blocks=num_blocks, block_size=block_size,
                       num_state_slots=num_state_slots, dtype=loaded.dtype, device=loaded.device,
                       num_checkpoints=num_checkpoints, kv_dtype=kv_dtype(loaded, kv_cache_dtype))
    return ModelRunner(loaded.model, cache, eos_token_ids=eos_token_ids, device=loaded.device)


def weight_read_bytes(runner: ModelRunner) -> int:
    """Bytes of weights one text forward pass reads: every text-model tensor once (the tied table once, as the LM
    head reads all of it; an embedding lookup reads only its rows), plus an untied LM head. The vision tower is out."""
    model = runner.model
    tensors = [*model.language_model.parameters(), *model.language_model.buffers()]
    if model.lm_head is not None:
        tensors += [*model.lm_head.parameters(), *model.lm_head.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def kv_dtype(loaded: LoadedModel, name: str | None) -> torch.dtype:
    """The cached keys' and values' dtype: as asked, else the model's."""
    return loaded.dtype if name is None else parse_dtype(name, loaded.device.type)


def kv_block_bytes(loaded: LoadedModel, block_size: int, kv_cache_dtype: str | None = None) -> int:
    """Bytes of one KV block (every attention layer's keys and values), for sizing the block pool."""
    return ModelCache.bytes_per_block(loaded.config.text, block_size, kv_dtype(loaded, kv_cache_dtype))


def attention_workspace(loaded: LoadedModel, max_num_seqs: int, kv_cache_dtype: str | None = None) -> tuple[int, int]:
    """(bytes per context token, fixed bytes) of paged attention's transient memory: it gathers one layer's keys
    and values at a time (plus their upcast copy when the cache is stored narrower than the model), for the longest
    sequence, and for the batched decode rows padded to at most BATCHED_DECODE_MAX_CONTEXT each."""
    text = loaded.config.text
    elems = 2 * text.num_key_value_heads * text.head_dim
    stored = torch.empty((), dtype=kv_dtype(loaded, kv_cache_dtype)).element_size()
    compute = torch.empty((), dtype=loaded.dtype).element_size()
    per_token = elems * (stored + (compute if compute != stored else 0))
    return per_token, per_token * max_num_seqs * BATCHED_DECODE_MAX_CONTEXT


def state_pool_bytes(loaded: LoadedModel, num_state_slots: int, num_checkpoints: int) -> int:
    """GDN state slots plus prefix-cache checkpoints (each one slot's state)."""
    return ModelCache.bytes_per_slot(loaded.config.text, loaded.dtype) * (num_state_slots + num_checkpoints)


def model_bytes(loaded: LoadedModel) -> int:
    """Bytes of every parameter and buffer of the loaded model (text, vision, MTP), as stored after quantisation."""
    tensors = [*loaded.model.parameters(), *loaded.model.buffers()]
    return sum(t.numel() * t.element_size() for t in {id(t): t for t in tensors}.values())


def device_memory(loaded: LoadedModel) -> MemoryInfo | None:
    """Total and free memory where the cache will live (the GPU's, or this machine's RAM), measured now."""
    if loaded.device.type == "cuda":
        free, total = torch.cuda.mem_get_info(loaded.device)
        return MemoryInfo(total_bytes=total, available_bytes=free)
    return host_memory()
