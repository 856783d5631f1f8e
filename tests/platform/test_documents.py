"""The generic JSON document store: put/get/delete/list, owner scoping, validation."""

from __future__ import annotations

import pytest

from qwen35.platform import InvalidInput, Platform


def test_put_get_replace_delete(platform: Platform, clock) -> None:  # type: ignore[no-untyped-def]
    docs = platform.documents
    body = {"id": "resp_1", "output": [{"type": "message", "text": "héllo"}], "n": 1.5, "ok": True, "none": None}
    stored = docs.put("response", "resp_1", "key_a", body, account_id="default")
    assert stored.body == body and stored.owner_key_id == "key_a"
    assert docs.get("response", "resp_1") == stored
    assert docs.get("response", "resp_1", owner_key_id="key_a") == stored
    assert docs.get("response", "resp_1", owner_key_id="key_b") is None  # another key's document looks absent
    assert docs.get("conversation", "resp_1") is None  # kinds are separate namespaces
    clock.advance(1)
    replaced = docs.put("response", "resp_1", "key_a", {"v": 2})
    assert replaced.body == {"v": 2} and replaced.created_at_ms == stored.created_at_ms
    assert replaced.updated_at_ms > stored.updated_at_ms
    with pytest.raises(InvalidInput):
        docs.put("response", "resp_1", "key_b", {"steal": True})
    assert docs.delete("response", "resp_1", owner_key_id="key_b") is False
    assert docs.delete("response", "resp_1", owner_key_id="key_a") is True
    assert docs.get("response", "resp_1") is None
    assert docs.delete("response", "resp_1") is False


def test_list_newest_first_scoped(platform: Platform, clock) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        clock.advance(1)
        platform.documents.put("response", f"r{i}", "key_a" if i % 2 == 0 else "key_b", {"i": i})
    mine = platform.documents.list("response", "key_a")
    assert [d.doc_id for d in mine] == ["r4", "r2", "r0"]
    assert len(platform.documents.list("response", None, limit=2)) == 2


@pytest.mark.parametrize(
    ("kind", "doc_id", "body"),
    [("Bad Kind", "x", {}), ("response", "", {}), ("response", "x" * 129, {}), ("response", "x", {1, 2}),
     ("response", "x", float("nan"))],
)
def test_validation(platform: Platform, kind: str, doc_id: str, body: object) -> None:
    with pytest.raises(InvalidInput):
        platform.documents.put(kind, doc_id, "k", body)
