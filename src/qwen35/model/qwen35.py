"""The Qwen3.5 text model: decoder stack (3 Gated DeltaNet : 1 gated attention) with tied embeddings.

Pure torch. Owns the decoder layer, the final norm and the LM head, and the forward over a flat ragged batch.
Parameter names mirror the official checkpoint under `model.language_model.*` so weight loading is a prefix
strip. Invariant: `forward` only computes logits for the rows asked for (`logits_rows`), never the whole batch.
"""

from __future__ import annotations

import torch
from torch import nn

from qwen35.model.attention import GatedAttention
from qwen35.model.batch import ForwardBatch, ModelCache
from qwen35.model.config import TextConfig, VisionConfig
from qwen35.model.deltanet import GatedDeltaNet
from qwen35.model.layers import MLP, Linear, MRotaryEmbedding, RMSNorm, linear
from qwen35.model.quantized import QuantEmbedding, QuantLinear
from qwen35.model.vision import VisionModel


class DecoderLayer(nn.Module):
    def __init__(self, config: TextConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_type = config.layer_types[layer_idx]
        if self.layer_type == "linear_attention":
            self.linear_attn = GatedDeltaNet(config, layer_idx)
        else:
            self.self_attn = GatedAttention(config, layer_idx)
        self.mlp = MLP(config.hidden_size, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, batch: ForwardBatch, cache: ModelCache
    ) -> torch.Tensor:
        h = self.input_layernorm(x)
        if self.layer_type == "linear_attention":
            h = self.linear_attn(h, batch, cache)
        else:
            h = self.self_attn(h, cos, sin, batch, cache)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x))


class TextModel(nn.Module):
    """`model.language_model` of the official checkpoint."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.embed_tokens: nn.Module = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = MRotaryEmbedding(config)


class Qwen35ForCausalLM(nn.Module):
    """Qwen3_5ForConditionalGeneration: the decoder, and the vision tower whose embeddings enter the decoder via
    `ForwardBatch.input_embeds` (scattered by the runner into the media placeholder rows)."""

    def __init__(self, config: TextConfig, vision: VisionConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.language_model = TextModel(config)
        self.visual: VisionModel | None = VisionModel(vision) if vision is not None else None
        self.lm_head: nn.Module | None = None
        if not config.tie_word_embeddings:
            self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)

    @property
    def output_weight(self) -> torch.Tensor:
        """The dense LM-head weight (the tied embedding table); quantised models have none."""
        head = self.language_model.embed_tokens if self.lm_head is None else self.lm_head
        if isinstance(head, QuantEmbedding | QuantLinear):
            raise TypeError("the LM head is quantised: it has no dense weight")
        return head.weight

    @property
    def activation_dtype(self) -> torch.dtype:
        """The dtype token embeddings come in (media embeddings are scattered among them)."""
        embed = self.language_model.embed_tokens
        return embed.dtype if isinstance(embed, QuantEmbedding) else embed.weight.dtype

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch, cache: ModelCache, logits_rows: torch.Tensor) -> torch.Tensor:
        """Run the decoder over the batch's new tokens; return float32 logits [len(logits_rows), vocab]."""
        lm = self.language_model
        x = batch.input_embeds if batch.input_embeds is not None else lm.embed_tokens(batch.input_ids)
        cos, sin = lm.rotary_emb(batch.positions, x.dtype)
        for layer in lm.layers:
            x = layer(x, cos, sin, batch, cache)
        hidden = lm.norm(x[logits_rows])
        return self.compute_logits(hidden)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.embed_tokens(input_ids)

    def encode_media(self, patches: torch.Tensor, grids: list[tuple[int, int, int]]) -> torch.Tensor:
        """Vision-tower embeddings [sum(t*h*w) / merge^2, hidden] of media patches with the given grids."""
        if self.visual is None:
            raise RuntimeError("this checkpoint has no vision tower")
        return self.visual(patches, grids).to(self.activation_dtype)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        embed = self.language_model.embed_tokens
        if self.lm_head is None and isinstance(embed, QuantEmbedding):
            return embed.logits(hidden)
        if isinstance(self.lm_head, QuantLinear):
            return self.lm_head(hidden).float()
        return linear(hidden, self.output_weight).float()
