"""Shared test data for processor tests: the rendered_examples.md cases (copied from the reference folder)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"


def rendered_examples() -> list[dict[str, Any]]:
    """The cases of rendered_examples.md: inputs, expected prompt string, expected ids, which template."""
    text = (DATA / "rendered_examples.md").read_text(encoding="utf-8")
    cases = []
    for section in re.split(r"\n## ", text)[1:]:
        title = section.splitlines()[0]
        if not re.match(r"[A-Z]\d+\.", title):
            continue
        blocks = re.findall(r"```json\n(.*?)\n```", section, flags=re.S)
        inputs, prompt, ids = (json.loads(b) for b in blocks[:3])
        cases.append(
            {
                "title": title,
                "inputs": inputs,
                "prompt": prompt,
                "ids": ids,
                "template": "2b" if "2B/0.8B" in title else "4b",
            }
        )
    return cases
