"""A transformers 5.23 `Qwen3_5ForCausalLM` that runs on *our* model's weight tensors (no second copy).

Owns building the reference model on the meta device and pointing every one of its parameters at the storage of
the matching parameter of our `Qwen35ForCausalLM` (our names mirror the checkpoint: ours
`language_model.layers.N.x` is theirs `model.layers.N.x`; the tied `lm_head.weight` is our embedding table).
Imports transformers and our model classes only; it is benchmark code, never imported by the package.
Invariant: after `build_twin` no parameter or buffer of the twin is on the meta device, and every parameter
shares storage with ours (checked), so both engines run bit-identical weights and the 4B fits in RAM once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qwen35.model.qwen35 import Qwen35ForCausalLM


class TwinError(RuntimeError):
    """The transformers model could not be mapped onto our weights (a name or shape did not match)."""


@dataclass(frozen=True)
class Twin:
    model: nn.Module  # transformers Qwen3_5ForCausalLM, eval mode
    attn_implementation: str
    num_shared_tensors: int


def _our_name(their_name: str) -> str:
    """`model.layers.3.mlp.up_proj.weight` -> `language_model.layers.3.mlp.up_proj.weight`."""
    if their_name.startswith("model."):
        return "language_model." + their_name[len("model."):]
    raise TwinError(f"transformers parameter {their_name!r} has no counterpart in our model")


def build_twin(ours: Qwen35ForCausalLM, text_config: dict[str, Any]) -> Twin:
    """Build transformers' text model over our parameters. `text_config` is the checkpoint's `text_config`."""
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig
    from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5TextRotaryEmbedding

    our_params = dict(ours.named_parameters())
    dtype = next(iter(our_params.values())).dtype
    device = next(iter(our_params.values())).device
    config = Qwen3_5TextConfig(**text_config)
    config.dtype = dtype
    with torch.device("meta"):
        twin = Qwen3_5ForCausalLM(config)
    shared = 0
    for module_name, module in twin.named_modules():
        for param_name, current in list(module._parameters.items()):
            if current is None:  # e.g. conv1d.bias=False registers a None slot
                continue
            full = f"{module_name}.{param_name}" if module_name else param_name
            if full == "lm_head.weight":
                target = ours.output_weight
            else:
                target = our_params.get(_our_name(full))
                if target is None:
                    raise TwinError(f"our model has no parameter {_our_name(full)!r} (for {full!r})")
            if tuple(current.shape) != tuple(target.shape):
                raise TwinError(f"{full}: transformers shape {tuple(current.shape)} != ours {tuple(target.shape)}")
            # The same nn.Parameter object: no copy, and any later change to ours is seen by both.
            module._parameters[param_name] = target  # type: ignore[assignment]
            shared += 1
    # Buffers were created on meta: rebuild the only module that has any (rotary inverse frequencies).
    twin.model.rotary_emb = Qwen3_5TextRotaryEmbedding(config).to(device)
    for name, tensor in [*twin.named_parameters(remove_duplicate=False), *twin.named_buffers()]:
        if tensor.device.type == "meta":
            raise TwinError(f"{name} is still on the meta device")
    twin.eval()
    return Twin(model=twin, attn_implementation=str(config._attn_implementation), num_shared_tensors=shared)


def check_shared_storage(twin: nn.Module, ours: Qwen35ForCausalLM) -> int:
    """Number of distinct storages the twin's parameters use that are not ours (0 means no second copy)."""
    our_ptrs = {p.untyped_storage().data_ptr() for p in ours.parameters()}
    return sum(1 for p in twin.parameters() if p.untyped_storage().data_ptr() not in our_ptrs)


__all__ = ["Twin", "TwinError", "build_twin", "check_shared_storage"]
