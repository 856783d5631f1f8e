"""Where one decode step of our engine (batch 1 or several sequences) spends its time: engine phases, module kinds,
the quantised weight products inside them, and top torch ops.

Owns the instrumentation, all of it from the outside (instance attributes shadowing runner methods, forward hooks
on modules, torch.profiler), removed before returning: no engine or model file is touched.
Imports torch and qwen35's engine types. Invariant: the engine is left exactly as found (no hook or wrapper
survives, the profiled request runs to completion and frees its cache).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from qwen35.engine.engine import LLMEngine
from qwen35.engine.request import SamplingParams


def _timed(fn: Callable[..., Any], bucket: dict[str, float], name: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            bucket[name] += time.perf_counter() - start

    return wrapper


PRODUCTS = "  of which: quantised weight products (QuantLinear + LM head)"


def _timing_hooks(module: torch.nn.Module, bucket: dict[str, float], kind: str) -> list[Any]:
    """Pre/post forward hooks adding the module's wall time per call to `bucket[kind]`."""
    start: list[float] = []

    def pre(_mod: torch.nn.Module, _inputs: Any) -> None:
        start.append(time.perf_counter())

    def post(_mod: torch.nn.Module, _inputs: Any, _output: Any) -> None:
        bucket[kind] += time.perf_counter() - start.pop()

    return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]


def _module_hooks(model: torch.nn.Module, bucket: dict[str, float]) -> list[Any]:
    """Wall time per module kind (GDN mixer, attention mixer, MLP, norms) through pre/post forward hooks."""
    kinds = {"linear_attn": "Gated DeltaNet mixer", "self_attn": "gated attention mixer", "mlp": "MLP (SwiGLU)",
             "input_layernorm": "RMSNorms", "post_attention_layernorm": "RMSNorms"}
    handles = []
    for name, module in model.named_modules():
        kind = kinds.get(name.rsplit(".", 1)[-1])
        if kind is not None and ".layers." in f".{name}":
            handles += _timing_hooks(module, bucket, kind)
    return handles


def _product_hooks(model: torch.nn.Module, bucket: dict[str, float]) -> list[Any]:
    """Wall time of the quantised weight products (every `QuantLinear` forward and the tied LM head's `logits`)."""
    from qwen35.model.quantized import QuantEmbedding, QuantLinear

    handles: list[Any] = []
    for module in model.modules():
        if isinstance(module, QuantLinear):
            handles += _timing_hooks(module, bucket, PRODUCTS)
        elif isinstance(module, QuantEmbedding):
            module.logits = _timed(module.logits, bucket, PRODUCTS)  # type: ignore[method-assign]
            handles.append(_Unshadow(module, "logits"))
    return handles


class _Unshadow:
    """A handle whose `remove` deletes an instance attribute that shadows a method."""

    def __init__(self, obj: object, attr: str) -> None:
        self.obj, self.attr = obj, attr

    def remove(self) -> None:
        delattr(self.obj, self.attr)


def profile_decode(engine: LLMEngine, prompt: list[int], num_steps: int, batch: int = 1) -> str:
    """Run `batch` requests of `prompt`: prefill, `num_steps` timed decode steps of all of them together,
    `num_steps` profiled ones. Returns Markdown."""
    request_ids = [f"bench-profile-{i}" for i in range(batch)]
    for i, request_id in enumerate(request_ids):  # distinct last token: no request is a prefix hit of another
        engine.add_request(request_id, [*prompt[:-1], (prompt[-1] + i) % engine.vocab_size],
                           SamplingParams(max_tokens=2 * num_steps + 1, temperature=0.0, ignore_eos=True))

    def prefilling() -> bool:
        states = [engine.requests.get(rid) for rid in request_ids]
        return any(state is not None and not all(seq.output_token_ids for seq in state.seqs) for state in states)

    while prefilling():
        engine.step()  # prefills + first tokens: not part of the decode profile
    runner = engine.runner
    phases: dict[str, float] = defaultdict(float)
    modules: dict[str, float] = defaultdict(float)
    runner.forward = _timed(runner.forward, phases, "model forward (runner.forward)")  # type: ignore[method-assign]
    runner.sample = _timed(runner.sample, phases, "sampling (runner.sample)")  # type: ignore[method-assign]
    handles = _module_hooks(runner.model, modules) + _product_hooks(runner.model, modules)
    try:
        start = time.perf_counter()
        for _ in range(num_steps):
            engine.step()
        step_total = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
        del runner.forward, runner.sample  # the class methods show through again
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(num_steps):
            engine.step()
    while engine.has_unfinished():
        engine.step()

    lines = [f"### Profile of our batch-{batch} decode step ({num_steps} steps, "
             f"{1000 * step_total / num_steps:.0f} ms/step)",
             "", "| part | ms/step | % of step |", "|---|---:|---:|"]
    forward = phases["model forward (runner.forward)"]
    rows = [*phases.items(), ("scheduler + bookkeeping (rest of engine.step)", step_total - sum(phases.values()))]
    products = modules.pop(PRODUCTS, 0.0)
    rows += [(f"  inside forward: {k}", v) for k, v in sorted(modules.items(), key=lambda kv: -kv[1])]
    rows.append(("  inside forward: embeddings, final norm, LM head, rest", forward - sum(modules.values())))
    if products:
        rows.append((PRODUCTS, products))
    for name, seconds in rows:
        lines.append(f"| {name} | {1000 * seconds / num_steps:.1f} | {100 * seconds / step_total:.1f} |")
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40)
    lines += ["", "torch.profiler, top ops by self CPU time (profiled steps; profiler overhead included):", "",
              "```", table.strip(), "```"]
    return "\n".join(lines)


__all__ = ["profile_decode"]
