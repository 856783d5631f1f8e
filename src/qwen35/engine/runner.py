"""Model runner: turns a SchedulerOutput into one forward pass and samples the sequences that completed.

The only engine module that imports the model. Owns the cache tensors (`ModelCache`), the flat batch layout
(input ids, three-stream positions, slot mapping), per-sample seeded generators and prompt-logprob collection.
Invariant: logits are computed only for rows that sample or that asked for prompt logprobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from qwen35.engine.request import TokenLogprobs
from qwen35.engine.sampler import SamplingRow, make_generator, prompt_logprobs, sample
from qwen35.engine.scheduler import ScheduledSequence, SchedulerOutput
from qwen35.engine.sequence import Sequence
from qwen35.model.batch import ForwardBatch, ModelCache
from qwen35.model.config import ModelConfig
from qwen35.model.qwen35 import Qwen35ForCausalLM
from qwen35.model.weights import build_model, load_config, parse_dtype, resolve_checkpoint


@dataclass
class StepLogits:
    logits: torch.Tensor | None  # [rows, V] float32
    row_of: dict[int, int]  # seq_id of a sampling sequence -> its row
    samplers: list[Sequence]


@dataclass
class SampledToken:
    seq: Sequence
    token_id: int
    logprobs: TokenLogprobs | None


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
        self._generators: dict[int, torch.Generator] = {}

    def release(self, seq: Sequence) -> None:
        self._generators.pop(seq.seq_id, None)

    def copy_cache(self, block_copies: list[tuple[int, int]], slot_copies: list[tuple[int, int]]) -> None:
        for src, dst in block_copies:
            self.cache.copy_block(src, dst)
        for src, dst in slot_copies:
            self.cache.copy_slot(src, dst)

    def save_checkpoint(self, slot: int, checkpoint: int) -> None:
        self.cache.save_checkpoint(slot, checkpoint)

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
        slots: list[int] = []
        block_size = self.cache.block_size
        for item in scheduled:
            seq, start = item.seq, item.seq.num_computed_tokens
            end = start + item.num_new_tokens
            tokens = seq.token_ids()
            ids.extend(tokens[start:end])
            positions = range(start, end)
            pos.extend(positions)
            table = seq.block_table
            slots.extend(table[p // block_size] * block_size + p % block_size for p in positions)
        positions_t = torch.tensor(pos, dtype=torch.long, device=self.device)
        return ForwardBatch(
            input_ids=torch.tensor(ids, dtype=torch.long, device=self.device),
            positions=positions_t.unsqueeze(0).expand(3, -1),  # text: the three MRoPE streams are equal
            query_lens=[s.num_new_tokens for s in scheduled],
            context_lens=[s.seq.num_computed_tokens + s.num_new_tokens for s in scheduled],
            block_tables=[s.seq.block_table for s in scheduled],
            state_slots=[s.seq.state_slot for s in scheduled],  # type: ignore[misc]
            slot_mapping=torch.tensor(slots, dtype=torch.long, device=self.device),
        )

    def forward(self, out: SchedulerOutput) -> StepLogits:
        """Run the model over the scheduled tokens; keep logits of sampling rows and prompt-logprob rows."""
        scheduled = out.scheduled
        self.cache.reset_slots(out.fresh_slots)
        for checkpoint, slot in out.restores:
            self.cache.load_checkpoint(checkpoint, slot)
        batch = self._build_batch(scheduled)
        rows: list[int] = []
        step = StepLogits(logits=None, row_of={}, samplers=[])
        prompt_rows: list[tuple[ScheduledSequence, int, int]] = []  # (item, first row, count)
        offset = 0
        for item in scheduled:
            seq = item.seq
            if seq.params.prompt_logprobs is not None and seq.num_computed_tokens < seq.num_prompt_tokens - 1:
                # Positions predicting prompt tokens 1..P-1 that this chunk covers.
                last = min(seq.num_computed_tokens + item.num_new_tokens, seq.num_prompt_tokens - 1)
                count = last - seq.num_computed_tokens
                prompt_rows.append((item, len(rows), count))
                rows.extend(range(offset, offset + count))
            if item.completes:
                step.samplers.append(seq)
                step.row_of[seq.seq_id] = len(rows)
                rows.append(offset + item.num_new_tokens - 1)
            offset += item.num_new_tokens
        step.logits = self.model(batch, self.cache, torch.tensor(rows, dtype=torch.long, device=self.device))
        for item, first, count in prompt_rows:
            self._collect_prompt_logprobs(item, step.logits[first : first + count])
        return step

    def sample(self, step: StepLogits, children: dict[int, list[Sequence]]) -> list[SampledToken]:
        """Sample every completing sequence; forked children sample from their parent's logits row."""
        if not step.samplers:
            return []
        sample_rows: list[SamplingRow] = []
        targets: list[Sequence] = []
        logit_index: list[int] = []
        for parent in step.samplers:
            for seq in [parent, *children.get(parent.seq_id, [])]:
                sample_rows.append(self._sampling_row(seq))
                targets.append(seq)
                logit_index.append(step.row_of[parent.seq_id])
        assert step.logits is not None
        result = sample(step.logits[torch.tensor(logit_index, device=step.logits.device)], sample_rows)
        return [
            SampledToken(seq, token, lps) for seq, token, lps in zip(targets, result.token_ids, result.logprobs)
        ]

    def _sampling_row(self, seq: Sequence) -> SamplingRow:
        params = seq.params
        banned: list[int] = []
        if len(seq.output_token_ids) < params.min_tokens:
            banned = list(params.stop_token_ids or ()) + ([] if params.ignore_eos else list(self.eos_token_ids))
        allowed = None
        if params.grammar is not None and not seq.forced_token_ids:
            allowed = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.device)
            params.grammar.fill_mask(allowed)
        return SamplingRow(
            params=params,
            prompt_token_ids=seq.prompt_token_ids,
            output_token_ids=seq.output_token_ids,
            generator=self._generator(seq),
            allowed_mask=allowed,
            banned_token_ids=banned,
            forced_token_id=seq.forced_token_ids[0] if seq.forced_token_ids else None,
        )

    def _collect_prompt_logprobs(self, item: ScheduledSequence, logits: torch.Tensor) -> None:
        seq = item.seq
        start = seq.num_computed_tokens
        if seq.prompt_logprobs is None:
            seq.prompt_logprobs = [None]  # the first prompt token has no logprob
        targets = torch.tensor(seq.prompt_token_ids[start + 1 : start + 1 + logits.shape[0]], device=logits.device)
        seq.prompt_logprobs.extend(prompt_logprobs(logits, targets, seq.params.prompt_logprobs or 0))


@dataclass(frozen=True)
class LoadedModel:
    model: Qwen35ForCausalLM
    config: ModelConfig
    model_dir: Path | None
    dtype: torch.dtype
    device: torch.device


def load_model(
    model: str, dummy_weights: bool = False, dtype: str | None = None, device: str | None = None, progress: bool = True
) -> LoadedModel:
    """Resolve a checkpoint (local dir or hub id) and build the model; dummy weights need no download."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = parse_dtype(dtype, device)
    model_dir = resolve_checkpoint(model, download=not dummy_weights)
    config = load_config(model_dir)
    net = build_model(model_dir, config, torch_dtype, device, dummy_weights=dummy_weights, progress=progress)
    return LoadedModel(net, config, model_dir, torch_dtype, torch.device(device))


def cache_bytes(config: ModelConfig, dtype: torch.dtype, block_size: int) -> tuple[int, int]:
    """(bytes per KV block, bytes per GDN state slot) for sizing the cache pools."""
    return ModelCache.bytes_per_block(config.text, block_size, dtype), ModelCache.bytes_per_slot(config.text, dtype)
