"""qwen35: a self-hosted API for Qwen3.5-4B on its own engine.

The offline API (`LLM`, `SamplingParams`) is importable from the package root, as vLLM users expect.
"""

from qwen35.engine.request import SamplingParams

__all__ = ["LLM", "SamplingParams"]


def __getattr__(name: str) -> object:
    # Lazy: importing qwen35 must not pull in torch for the platform or CLI key commands.
    if name == "LLM":
        from qwen35.offline import LLM

        return LLM
    raise AttributeError(name)
