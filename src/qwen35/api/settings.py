"""Server settings: what the HTTP edge needs to know about the deployment (model names, limits, docs).

Owns `ServerSettings` (a frozen value built by `qwen35 serve` or by tests) and model-name resolution.
Imports nothing from qwen35. Invariant: the canonical model id and its aliases are the only names the API accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MODEL_ID = "qwen3-5-4b"
MODEL_ALIASES: tuple[str, ...] = ("qwen3.5-4b", "Qwen/Qwen3.5-4B")
MODEL_CREATED = 1772064000  # 2026-02-26, the Qwen3.5 small-model release: a stable `created` for /v1/models


@dataclass(frozen=True)
class ServerSettings:
    """Deployment facts; defaults serve Qwen3.5-4B under its public names."""

    model_id: str = MODEL_ID
    model_aliases: tuple[str, ...] = MODEL_ALIASES
    display_name: str = "Qwen3.5 4B"
    owned_by: str = "qwen35"
    created: int = MODEL_CREATED
    max_model_len: int | None = None
    model_path: str | None = None  # what `--model` pointed at; its name is accepted as one more alias
    data_dir: str | None = None
    docs: bool = True
    system_fingerprint: str = "fp_qwen35"
    extra_aliases: tuple[str, ...] = field(default=())
    # Input limits, checked before any work (api.limits); Anthropic's own body limit is 32 MB.
    max_body_bytes: int = 32 * 1024 * 1024
    max_json_depth: int = 128  # nesting of objects/arrays; deeper bodies are refused with a 400, never a 500
    max_json_elements: int = 1_000_000  # values (objects, arrays, scalars) in one body
    # A stream sends its first frame at once, then this keep-alive while nothing else is sent (proxy idle timeouts).
    keepalive_s: float = 5.0
    # A generation running longer than this ends with a 504 / in-stream timeout error, billed for what it made.
    max_request_s: float | None = None
    # Failed authentication per client address (api.auth_throttle): beyond this many in the window, 429 +
    # retry-after instead of 401 (a valid key is never refused by it); 0 turns it off.
    auth_max_failures: int = 20
    auth_failure_window_s: float = 60.0

    def accepted_names(self) -> tuple[str, ...]:
        names = [self.model_id, *self.model_aliases, *self.extra_aliases]
        if self.model_path:
            names.append(self.model_path)
            names.append(Path(self.model_path).name)
        return tuple(dict.fromkeys(n for n in names if n))

    def resolve_model(self, name: object) -> str | None:
        """The canonical id for a requested model name (case-insensitive), or None when it is not served."""
        if not isinstance(name, str):
            return None
        wanted = name.strip().lower()
        for candidate in self.accepted_names():
            if candidate.lower() == wanted:
                return self.model_id
        return None
