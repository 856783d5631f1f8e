"""qwen35: a self-hosted API for Qwen3.5-4B on its own engine.

The offline API (`LLM`, `SamplingParams`) is importable from the package root, as vLLM users expect.
"""

import os

# OpenMP threads (torch's and the CPU kernels', one libgomp) spin 300k iterations by default after each parallel
# region; on a machine shared with other processes a spinning thread gets preempted and every later region waits a
# scheduler slice for it (measured: a 0.6 ms kernel call took 10 ms median under load). Spin briefly (covers the
# gaps between back-to-back ops of a decode step), then sleep. Only effective before torch is imported; an explicit
# setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from qwen35.engine.request import SamplingParams  # noqa: E402

__all__ = ["LLM", "SamplingParams"]


def __getattr__(name: str) -> object:
    # Lazy: importing qwen35 must not pull in torch for the platform or CLI key commands.
    if name == "LLM":
        from qwen35.offline import LLM

        return LLM
    raise AttributeError(name)
