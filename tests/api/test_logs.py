"""Server logs: JSON lines (opt-in) with the request id of the request being served; secrets masked in any format."""

from __future__ import annotations

import json
import logging

import pytest

from qwen35.api.logs import REQUEST_ID, configure_logging

SECRET = "sk-q35-0123456789abQWERTYuiopASDFGHjklZXCVBNm_1234567890-abcdefgh"


@pytest.fixture()
def restore_logging():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_the_request_id_and_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    log = logging.getLogger("qwen35.test")
    token = REQUEST_ID.set("req_abc")
    try:
        log.warning("auth failed for %s (header Bearer %s)", SECRET, SECRET)
    finally:
        REQUEST_ID.reset(token)
    log.info("outside a request")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [entry["request_id"] for entry in lines] == ["req_abc", "-"]
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == "qwen35.test"
    assert SECRET not in lines[0]["msg"] and "sk-q35-0123456789ab***" in lines[0]["msg"]
    assert "Bearer ***" in lines[0]["msg"]


@pytest.mark.usefixtures("restore_logging")
def test_text_format_masks_secrets_in_exceptions_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        logging.getLogger("qwen35.test").exception("failed")
    err = capsys.readouterr().err
    assert "failed" in err and "[-]" in err
    assert "Traceback" in err and SECRET not in err
