"""Quantised weights in the model: `QuantLinear` (one or several fused projections), `QuantEmbedding` (the tied
embedding table that is also the LM head), and `quantize_model`, which swaps them in on the meta model before its
memory is allocated.

Pure torch + `model.kernels`. Owns which projections are fused (attention q|k|v, Gated DeltaNet qkv|z|b|a, MLP
gate|up: one activation quantisation and one pass over the weights per group) and the map from official
parameter names to (module, row offset), which loading and dummy initialisation fill. Invariant: a quantised
model keeps the float model's parameter order in `logical_parameters`, and every official weight name is either
still a parameter or an entry of `quant_parts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from qwen35.model.kernels.quant import (
    QuantizedWeight,
    choose_layout,
    dequantize_rows,
    qmatmul,
    quantize_into,
    storage_shapes,
    supports,
)

QUANTIZATIONS = ("none", "int8", "int4", "bf16")


class QuantLinear(nn.Module):
    """A bias-free linear whose weight is stored in a quantised format; `parts` splits fused outputs."""

    def __init__(self, in_features: int, out_features: int, fmt: str, parts: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.in_features, self.out_features, self.fmt = in_features, out_features, fmt
        self.parts = parts or (out_features,)
        self.layout = choose_layout(fmt, out_features)
        shape, dtype, scales = storage_shapes(fmt, out_features, in_features, self.layout)
        self.register_buffer("qdata", torch.empty(shape, dtype=dtype))
        self.register_buffer("qscales", torch.empty(scales, dtype=torch.float16) if scales else None)

    @property
    def weight_q(self) -> QuantizedWeight:
        return QuantizedWeight(self.fmt, self.qdata, self.qscales, self.out_features, self.in_features, self.layout)

    def load_rows(self, offset: int, dense: torch.Tensor) -> None:
        quantize_into(dense, self.weight_q, offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return qmatmul(x, self.weight_q).to(x.dtype)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Outputs of the fused projections, in `parts` order."""
        return tuple(torch.split(self(x), list(self.parts), dim=-1))


class QuantEmbedding(nn.Module):
    """Embedding table in a quantised format: lookup dequantises only the rows asked for; `logits` is the tied head."""

    def __init__(self, num_embeddings: int, embedding_dim: int, fmt: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.table = QuantLinear(embedding_dim, num_embeddings, fmt)
        self.dtype = dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return dequantize_rows(self.table.weight_q, ids).to(self.dtype)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return qmatmul(hidden, self.table.weight_q)


@dataclass(frozen=True)
class QuantPart:
    module: str  # path of the QuantLinear (or QuantEmbedding's table) holding the rows
    offset: int  # first row of this official weight inside it
    shape: tuple[int, int]


# Fusions: (parent attribute names to fuse, the fused attribute name).
_FUSIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "MLP": (("gate_proj", "up_proj"), "gate_up"),
    "GatedAttention": (("q_proj", "k_proj", "v_proj"), "qkv"),
    "GatedDeltaNet": (("in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"), "in_proj"),
}
_SINGLES = {"MLP": ("down_proj",), "GatedAttention": ("o_proj",), "GatedDeltaNet": ("out_proj",)}


def quantize_model(model: nn.Module, fmt: str) -> None:
    """Replace the text model's linears (and the tied embedding / LM head) by quantised modules, in place.

    Meant for a model on the meta device (nothing allocated yet); records `logical_parameters` (official order and
    shapes of the float model) and `quant_parts` on the model for loading and dummy initialisation."""
    logical = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    parts: dict[str, QuantPart] = {}
    for path, module in list(model.named_modules()):
        kind = type(module).__name__
        if kind not in _FUSIONS or not path.startswith("language_model."):
            continue
        names, fused_name = _FUSIONS[kind]
        linears = [getattr(module, n) for n in names]
        in_features = linears[0].in_features
        if all(lin.bias is None for lin in linears) and supports(fmt, in_features):
            sizes = tuple(lin.out_features for lin in linears)
            setattr(module, fused_name, QuantLinear(in_features, sum(sizes), fmt, sizes))
            offset = 0
            for n, lin in zip(names, linears):
                parts[f"{path}.{n}.weight"] = QuantPart(f"{path}.{fused_name}", offset, (lin.out_features, in_features))
                offset += lin.out_features
                delattr(module, n)
        for n in _SINGLES[kind]:
            lin = getattr(module, n)
            if lin.bias is None and supports(fmt, lin.in_features):
                setattr(module, n, QuantLinear(lin.in_features, lin.out_features, fmt))
                parts[f"{path}.{n}.weight"] = QuantPart(f"{path}.{n}", 0, (lin.out_features, lin.in_features))
    lm = model.language_model  # type: ignore[union-attr]
    embed = lm.embed_tokens
    if model.lm_head is None and supports(fmt, embed.embedding_dim):  # type: ignore[union-attr]
        lm.embed_tokens = QuantEmbedding(embed.num_embeddings, embed.embedding_dim, fmt, embed.weight.dtype)
        parts["language_model.embed_tokens.weight"] = QuantPart(
            "language_model.embed_tokens.table", 0, (embed.num_embeddings, embed.embedding_dim))
    elif model.lm_head is not None and supports(fmt, model.lm_head.in_features):  # type: ignore[union-attr]
        head = model.lm_head  # type: ignore[union-attr]
        model.lm_head = QuantLinear(head.in_features, head.out_features, fmt)
        parts["lm_head.weight"] = QuantPart("lm_head", 0, (head.out_features, head.in_features))
    model.logical_parameters = logical  # type: ignore[assignment]
    model.quant_parts = parts  # type: ignore[assignment]
    model.quantization = fmt  # type: ignore[assignment]


def load_part(model: nn.Module, part: QuantPart, dense: torch.Tensor) -> None:
    module = model.get_submodule(part.module)
    assert isinstance(module, QuantLinear)
    module.load_rows(part.offset, dense)


def quantized_weight_bytes(model: nn.Module) -> int:
    """Bytes of every quantised weight (data + scales)."""
    return sum(m.weight_q.nbytes for m in model.modules() if isinstance(m, QuantLinear))
