"""Where one batch-1 decode step of our engine spends its time: engine phases, module kinds, and top torch ops.

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


def _module_hooks(model: torch.nn.Module, bucket: dict[str, float]) -> list[Any]:
    """Wall time per module kind (GDN mixer, attention mixer, MLP, norms) through pre/post forward hooks."""
    kinds = {"linear_attn": "Gated DeltaNet mixer", "self_attn": "gated attention mixer", "mlp": "MLP (SwiGLU)",
             "input_layernorm": "RMSNorms", "post_attention_layernorm": "RMSNorms"}
    handles = []
    starts: dict[int, float] = {}
    for name, module in model.named_modules():
        kind = kinds.get(name.rsplit(".", 1)[-1])
        if kind is None or ".layers." not in f".{name}":
            continue

        def pre(mod: torch.nn.Module, _inputs: Any) -> None:
            starts[id(mod)] = time.perf_counter()

        def post(mod: torch.nn.Module, _inputs: Any, _output: Any, kind: str = kind) -> None:
            bucket[kind] += time.perf_counter() - starts.pop(id(mod))

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def profile_decode(engine: LLMEngine, prompt: list[int], num_steps: int) -> str:
    """Run one request: prefill, `num_steps` timed decode steps, `num_steps` profiled ones. Returns Markdown."""
    request_id = "bench-profile"
    engine.add_request(request_id, prompt, SamplingParams(max_tokens=2 * num_steps + 1, temperature=0.0,
                                                          ignore_eos=True))
    engine.step()  # prefill + first token: not part of the decode profile
    runner = engine.runner
    phases: dict[str, float] = defaultdict(float)
    modules: dict[str, float] = defaultdict(float)
    runner.forward = _timed(runner.forward, phases, "model forward (runner.forward)")  # type: ignore[method-assign]
    runner.sample = _timed(runner.sample, phases, "sampling (runner.sample)")  # type: ignore[method-assign]
    handles = _module_hooks(runner.model, modules)
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

    lines = [f"### Profile of our batch-1 decode step ({num_steps} steps, {1000 * step_total / num_steps:.0f} ms/step)",
             "", "| part | ms/step | % of step |", "|---|---:|---:|"]
    forward = phases["model forward (runner.forward)"]
    rows = [*phases.items(), ("scheduler + bookkeeping (rest of engine.step)", step_total - sum(phases.values()))]
    rows += [(f"  inside forward: {k}", v) for k, v in sorted(modules.items(), key=lambda kv: -kv[1])]
    rows.append(("  inside forward: embeddings, final norm, LM head, rest", forward - sum(modules.values())))
    for name, seconds in rows:
        lines.append(f"| {name} | {1000 * seconds / num_steps:.1f} | {100 * seconds / step_total:.1f} |")
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40)
    lines += ["", "torch.profiler, top ops by self CPU time (profiled steps; profiler overhead included):", "",
              "```", table.strip(), "```"]
    return "\n".join(lines)


__all__ = ["profile_decode"]
