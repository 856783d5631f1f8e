"""Checkpoint resolution, weight loading (official safetensors layout) and dummy random initialisation.

Owns the mapping from official tensor names (`model.language_model.*`, `model.visual.*`, `mtp.*`, `lm_head.*`)
to our modules. MTP tensors are skipped on purpose (no speculative decoding yet). Every text parameter must be
filled or loading fails loudly; a checkpoint with a vision config but no `model.visual.*` tensors at all loads
text-only (media requests are then refused), a partial vision tower fails.
Invariant: a model returned by `build_model` has no uninitialised memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from qwen35.model.config import ModelConfig
from qwen35.model.quantized import QUANTIZATIONS, QuantPart, load_part, quantize_model
from qwen35.model.qwen35 import Qwen35ForCausalLM

OFFICIAL_REPO = "Qwen/Qwen3.5-4B"
_TEXT_PREFIX = "model.language_model."
_VISION_PREFIX = "model.visual."
_SKIPPED_PREFIXES = ("mtp.",)
# int8 (q8_0-like): at CPU decode it reads a quarter of float32's bytes, and its drift from float32 is small enough to
# be bounded tightly in tests (tests/model/test_quantized.py); int4 is faster still but drifts ~10x more: opt-in.
DEFAULT_CPU_QUANTIZATION = "int8"
_CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "merges.txt", "vocab.json"]


class CheckpointError(RuntimeError):
    """The checkpoint cannot be found, downloaded or loaded; the message says what to do."""


def resolve_checkpoint(model: str, download: bool = True) -> Path | None:
    """A local directory as is; otherwise a hub id fetched through huggingface_hub (clear error offline).

    Returns None when `download` is False and the id is not a local directory (dummy weights on a hub id).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path} has no config.json: not a Qwen3.5 checkpoint directory")
        return path
    if path.exists() or model.startswith((".", "/", "~")):
        raise CheckpointError(f"checkpoint directory {model!r} does not exist")
    if not download:
        return None
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=model, allow_patterns=_CHECKPOINT_PATTERNS)
    except Exception as exc:  # offline, unknown repo, auth: all end the same way for the user
        raise CheckpointError(
            f"could not fetch {model!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            "Pass a local checkpoint directory with --model, set HF_HUB_OFFLINE=1 with a populated cache, "
            "or use --dummy-weights to run the architecture on random weights."
        ) from exc
    return Path(local)


def load_config(model_dir: Path | None) -> ModelConfig:
    if model_dir is None:
        return ModelConfig.qwen35_4b()
    return ModelConfig.from_file(model_dir / "config.json")


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / n for n in names]
    files = sorted(model_dir.glob("model*.safetensors"))
    if not files:
        raise CheckpointError(f"no model*.safetensors in {model_dir}")
    return files


def _target_name(name: str, tied: bool) -> str | None:
    if name.startswith(_SKIPPED_PREFIXES):
        return None
    if name.startswith(_TEXT_PREFIX):
        return "language_model." + name[len(_TEXT_PREFIX):]
    if name.startswith(_VISION_PREFIX):
        return "visual." + name[len(_VISION_PREFIX):]
    if name.startswith("model.") and not name.startswith("model.visual"):  # bare text-model checkpoints
        return "language_model." + name[len("model."):]
    if name == "lm_head.weight":
        return None if tied else "lm_head.weight"
    return None


def _quant_parts(model: Qwen35ForCausalLM) -> dict[str, QuantPart]:
    parts: dict[str, QuantPart] = getattr(model, "quant_parts", {})
    return parts


def load_weights(model: Qwen35ForCausalLM, model_dir: Path, progress: bool = True) -> None:
    params = dict(model.named_parameters())
    parts = _quant_parts(model)
    missing = set(params) | set(parts)
    files = _weight_files(model_dir)
    bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True, desc="Loading weights",
               disable=not progress)
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                target = _target_name(name, model.lm_head is None)
                if target is None or (target.startswith("visual.") and model.visual is None):
                    continue
                if target not in params and target not in parts:
                    raise CheckpointError(f"unexpected tensor {name} in {file.name}")
                tensor = handle.get_tensor(name)
                if target in parts:  # quantised at load: no dense copy is kept
                    if tuple(tensor.shape) != parts[target].shape:
                        raise CheckpointError(f"{name}: shape {tuple(tensor.shape)} != expected {parts[target].shape}")
                    load_part(model, parts[target], tensor)
                    missing.discard(target)
                    continue
                param = params[target]
                if tuple(tensor.shape) != tuple(param.shape):
                    raise CheckpointError(f"{name}: shape {tuple(tensor.shape)} != expected {tuple(param.shape)}")
                with torch.no_grad():
                    param.copy_(tensor.to(param.dtype))
                missing.discard(target)
        bar.update(file.stat().st_size)
    bar.close()
    vision_missing = {name for name in missing if name.startswith("visual.")}
    if model.visual is not None and vision_missing == {n for n in params if n.startswith("visual.")}:
        model.visual = None  # a text-only checkpoint of the multimodal config: serve text, refuse media
        missing -= vision_missing
    if missing:
        raise CheckpointError(f"checkpoint {model_dir} lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")


@torch.no_grad()
def init_dummy_weights(model: Qwen35ForCausalLM, seed: int = 0, progress: bool = False) -> None:
    """Random weights with the checkpoint's statistics shape (std 0.02 linears, zero-centred norms)."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    parts = _quant_parts(model)
    # The float model's parameter order, so a quantised model gets the quantised values of the same random weights.
    logical: list[tuple[str, tuple[int, ...]]] = getattr(
        model, "logical_parameters", [(n, tuple(p.shape)) for n, p in params.items()])
    total = sum(torch.Size(shape).numel() for _, shape in logical)
    bar = tqdm(total=total, unit="param", unit_scale=True, desc="Random weights", disable=not progress)
    for name, shape in logical:
        bar.update(torch.Size(shape).numel())
        if name in parts:
            load_part(model, parts[name], torch.empty(shape).normal_(0.0, 0.02, generator=gen))
            continue
        param = params[name]
        if name.startswith("visual.") and (".norm" in name or name.endswith("bias")):
            param.fill_(1.0 if ".norm" in name and name.endswith("weight") else 0.0)  # LayerNorms at identity
        elif name.endswith("A_log"):
            param.copy_(torch.empty(param.shape).uniform_(0.01, 16, generator=gen).log())
        elif name.endswith("dt_bias") or name.endswith("linear_attn.norm.weight"):
            param.fill_(1.0)
        elif name.endswith("norm.weight"):
            param.zero_()
        elif param.device.type == "cpu":
            param.normal_(0.0, 0.02, generator=gen)
        else:
            param.copy_(torch.empty(param.shape).normal_(0.0, 0.02, generator=gen))
    bar.close()


def build_model(
    model_dir: Path | None,
    config: ModelConfig,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    dummy_weights: bool = False,
    progress: bool = True,
    quantization: str = "none",
) -> Qwen35ForCausalLM:
    """Construct the text model without a throw-away allocation, then load or randomise its weights.

    `quantization` (int8 | int4 | bf16) stores the text model's linears and the tied LM head in that format,
    quantised tensor by tensor as they load: no dense copy of a quantised weight ever exists."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose one of {list(QUANTIZATIONS)}")
    with torch.device("meta"):
        model = Qwen35ForCausalLM(config.text, config.vision)
    model = model.to(dtype=dtype)
    if quantization != "none":
        quantize_model(model, quantization)
    model = model.to_empty(device=device)
    # Buffers (rotary inverse frequencies) were on meta: recompute them on the real device in float32.
    rotary = model.language_model.rotary_emb
    dim = config.text.rotary_dim
    rotary.inv_freq = 1.0 / (config.text.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float, device=device) / dim))
    if model.visual is not None:
        model.visual.reset_buffers(device)
    if dummy_weights:
        init_dummy_weights(model, progress=progress)
    else:
        if model_dir is None:
            raise CheckpointError("real weights need a checkpoint directory or hub id (or pass --dummy-weights)")
        load_weights(model, model_dir, progress=progress)
    model.eval()
    return model


def default_dtype(device: str) -> torch.dtype:
    """float32 on CPU (bf16 GEMMs are slow on common CPUs), bfloat16 on CUDA."""
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def parse_dtype(name: str | None, device: str) -> torch.dtype:
    if name in (None, "auto"):
        return default_dtype(device)
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(table)}")
    return table[name]


__all__ = ["DEFAULT_CPU_QUANTIZATION", "CheckpointError", "build_model", "resolve_checkpoint", "load_config", "parse_dtype", "OFFICIAL_REPO"]
