"""The usage journal file: entries are on disk when `append` returns, a live writer's file is never adopted, a dead
one's is replayed once and deleted, a torn last line (an append that never returned) is skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from qwen35.platform.journal import UsageJournal

WRITER = r"""
import sys
from qwen35.platform.journal import UsageJournal
j = UsageJournal(sys.argv[1])
j.append({"op": "release", "admission_id": "adm_child", "rate_tokens": 1})
print("APPENDED", flush=True)
sys.stdin.read()
"""


def test_append_is_on_disk_and_replay_truncates(tmp_path: Path) -> None:
    journal = UsageJournal(tmp_path)
    journal.append({"op": "release", "admission_id": "adm_1", "rate_tokens": 3})
    journal.append({"op": "release", "admission_id": "adm_2", "rate_tokens": 4})
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1
    assert [json.loads(line)["admission_id"] for line in files[0].read_text().splitlines()] == ["adm_1", "adm_2"]
    applied: list[Any] = []
    assert journal.replay(applied.append) == 2 and journal.num_pending == 0
    assert files[0].stat().st_size == 0 and [e["admission_id"] for e in applied] == ["adm_1", "adm_2"]
    journal.close()
    assert not files[0].exists()


def test_a_failed_replay_keeps_every_entry(tmp_path: Path) -> None:
    journal = UsageJournal(tmp_path)
    journal.append({"op": "release", "admission_id": "adm_1", "rate_tokens": 3})

    def down(_entry: Any) -> None:
        raise OSError("store down")

    try:
        journal.replay(down)
    except OSError:
        pass
    assert journal.num_pending == 1
    seen: list[Any] = []
    assert journal.replay(seen.append) == 1 and seen[0]["admission_id"] == "adm_1"


def test_live_writers_are_left_alone_and_dead_ones_adopted(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().startswith("APPENDED")
        mine = UsageJournal(tmp_path)
        adopted: list[Any] = []
        assert mine.adopt_orphans(adopted.append) == 0  # its writer holds the flock
        child.kill()
        child.wait(timeout=30)
        path = next(tmp_path.glob("*.jsonl"))
        with path.open("ab") as f:
            f.write(b'{"op": "release", "admission_id": "adm_torn"')  # an append cut by the kill: no newline
        assert mine.adopt_orphans(adopted.append) == 1
        assert [e["admission_id"] for e in adopted] == ["adm_child"] and not path.exists()
        assert mine.adopt_orphans(adopted.append) == 0
    finally:
        child.kill()
        child.wait(timeout=30)
