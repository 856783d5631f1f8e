"""The operator CLI, run through a tiny argparse runner (the real `qwen35` entry point wires the same function)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qwen35.platform import Platform
from qwen35.platform.cli import add_platform_commands

RUNNER = (
    "import argparse, sys\n"
    "from qwen35.platform.cli import add_platform_commands\n"
    "parser = argparse.ArgumentParser(prog='qwen35')\n"
    "add_platform_commands(parser.add_subparsers(dest='command', required=True))\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.func(args))\n"
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="qwen35")
    add_platform_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_create_prints_secret_last_and_it_works(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path)
    code, out, _ = run(capsys, "keys", "create", "--name", "ci", "--data-dir", d)
    assert code == 0
    secret = out.strip().splitlines()[-1]
    with Platform.open(data_dir=d) as p:
        info = p.authenticate(secret)
        assert info is not None and info.name == "ci" and info.account_id == "default"
    code, out, _ = run(capsys, "keys", "list", "--data-dir", d, "--json")
    rows = json.loads(out)
    assert [r["key_id"] for r in rows] == [info.key_id] and secret not in out
    code, out, _ = run(capsys, "keys", "revoke", info.key_id, "--data-dir", d)
    assert code == 0
    with Platform.open(data_dir=d) as p:
        assert p.authenticate(secret) is None


def test_accounts_credits_and_admin_keys(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path)
    assert run(capsys, "accounts", "create", "acme", "--data-dir", d)[0] == 0
    code, _, err = run(capsys, "accounts", "create", "acme", "--data-dir", d)
    assert code == 1 and "already exists" in err
    code, out, _ = run(capsys, "credits", "add", "acme", "12.50", "--data-dir", d)
    assert code == 0 and "12.5" in out
    code, _, err = run(capsys, "credits", "add", "acme", "0.1x", "--data-dir", d)
    assert code == 2 and "not a valid USD amount" in err
    code, _, err = run(capsys, "credits", "add", "ghost", "1", "--data-dir", d)
    assert code == 1 and "does not exist" in err
    code, out, _ = run(capsys, "keys", "create", "--name", "boss", "--account", "acme", "--admin", "--rpm", "5",
                       "--data-dir", d)
    assert code == 0
    with Platform.open(data_dir=d) as p:
        info = p.authenticate(out.strip().splitlines()[-1])
        assert info is not None and info.is_admin and info.limits.requests_per_minute == 5
        assert p.get_account("acme").balance_nanos == 12_500_000_000
    code, out, _ = run(capsys, "accounts", "list", "--data-dir", d, "--json")
    assert {r["account"]: r["balance_usd"] for r in json.loads(out)} == {"acme": "12.5", "default": "0"}


def test_prices_set_load_list(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path)
    code, out, _ = run(capsys, "prices", "list", "--data-dir", d, "--json")
    assert json.loads(out) == [{"model": "*", "input_per_million": "0.04", "cached_input_per_million": "0.02",
                                "output_per_million": "0.07", "web_search_per_call": "0.013"}]
    assert run(capsys, "prices", "set", "--model", "qwen3-5-4b", "--output", "0.08", "--data-dir", d)[0] == 0
    price_file = tmp_path / "prices.json"
    price_file.write_text(json.dumps([{"model": "big", "input_per_million": 0.5, "cached_input_per_million": "0.25",
                                       "output_per_million": 1, "web_search_per_call": "0.01"}]))
    assert run(capsys, "prices", "load", str(price_file), "--data-dir", d)[0] == 0
    code, out, _ = run(capsys, "prices", "list", "--data-dir", d, "--json")
    cards = {r["model"]: r for r in json.loads(out)}
    assert cards["qwen3-5-4b"]["output_per_million"] == "0.08" and cards["qwen3-5-4b"]["input_per_million"] == "0.04"
    assert cards["big"]["input_per_million"] == "0.5"
    code, _, err = run(capsys, "prices", "set", "--input", "0.0001", "--data-dir", d)
    assert code == 2 and "multiple of 0.001" in err


def test_usage_list(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path)
    with Platform.open(data_dir=d) as p:
        key, _ = p.create_key("k")
        p.record_usage("req-1", key, "messages", "qwen3-5-4b", 1000, 0, 1000)
    code, out, _ = run(capsys, "usage", "list", "--data-dir", d, "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["request_id"] == "req-1" and rows[0]["cost_usd"] == "0.00011"


def test_runner_subprocess_last_line_is_secret(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", RUNNER, "keys", "create", "--name", "x", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    last = out.rstrip("\n").splitlines()[-1]
    assert last.startswith("sk-q35-") and " " not in last
    bad = subprocess.run([sys.executable, "-c", RUNNER, "keys", "create", "--name", "x", "--account", "nope",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "does not exist" in bad.stderr
