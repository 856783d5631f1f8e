"""The dashboard HTTP API and GET /v1/pricing, on a bare FastAPI app with a real SQLite Platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from qwen35.api.platform import build_platform_router
from qwen35.platform import Platform


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with Platform.open(data_dir=tmp_path) as p:
        yield p


@pytest.fixture
def client(platform: Platform) -> TestClient:
    app = FastAPI()
    app.state.platform = platform
    app.include_router(build_platform_router())
    return TestClient(app)


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_pricing_is_public(client: TestClient) -> None:
    r = client.get("/v1/pricing")
    assert r.status_code == 200
    assert r.json()["data"] == [{
        "object": "price", "model": "*", "currency": "USD", "input_per_million": "0.04",
        "cached_input_per_million": "0.02", "output_per_million": "0.07", "web_search_per_call": "0.013",
        "effective_at": 0,
    }]


def test_auth_required(client: TestClient) -> None:
    r = client.get("/v1/dashboard/keys")
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.get("/v1/dashboard/keys", headers=_auth("sk-q35-nope"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_own_keys_create_list_revoke(client: TestClient, platform: Platform) -> None:
    platform.create_account("acme")
    me, secret = platform.create_key("me", account="acme")
    other, _ = platform.create_key("other")  # default account
    r = client.post("/v1/dashboard/keys", headers={"x-api-key": secret}, json={"name": "new", "max_concurrent": 3})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["account"] == "acme" and created["limits"]["max_concurrent"] == 3
    assert platform.authenticate(created["secret"]) is not None
    listed = client.get("/v1/dashboard/keys", headers=_auth(secret)).json()["data"]
    assert {k["id"] for k in listed} == {me.key_id, created["id"]}
    assert all("secret" not in k for k in listed)
    r = client.delete(f"/v1/dashboard/keys/{other.key_id}", headers=_auth(secret))
    assert r.status_code == 404  # another account's key is invisible
    r = client.delete(f"/v1/dashboard/keys/{created['id']}", headers=_auth(secret))
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert platform.authenticate(created["secret"]) is None


def test_user_cannot_escalate(client: TestClient, platform: Platform) -> None:
    _, secret = platform.create_key("user")
    platform.create_account("acme")
    for body in ({"name": "x", "admin": True}, {"name": "x", "account": "acme"}):
        r = client.post("/v1/dashboard/keys", headers=_auth(secret), json=body)
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert client.get("/v1/dashboard/accounts", headers=_auth(secret)).status_code == 403
    assert client.get("/v1/dashboard/balance?account=acme", headers=_auth(secret)).status_code == 403
    assert client.post("/v1/dashboard/credits", headers=_auth(secret), json={"account": "acme", "amount_usd": "5"}
                       ).status_code == 403


@pytest.mark.parametrize(
    "body", [{"name": ""}, {"nam": "x"}, {"name": "x", "max_concurrent": 0}, {"name": "x", "expires_at": "soon"}]
)
def test_bad_bodies_are_400_never_422(client: TestClient, platform: Platform, body: dict) -> None:
    _, secret = platform.create_key("user")
    r = client.post("/v1/dashboard/keys", headers=_auth(secret), json=body)
    assert r.status_code == 400 and r.json()["error"]["message"]
    r = client.post("/v1/dashboard/keys", headers={**_auth(secret), "content-type": "application/json"},
                    content=b"{not json")
    assert r.status_code == 400


def test_balance_and_usage(client: TestClient, platform: Platform) -> None:
    platform.create_account("acme")
    platform.add_credits("acme", "2")
    key, secret = platform.create_key("me", account="acme")
    adm = platform.admit(key, "messages", "qwen3-5-4b", 1000, 1000)
    balance = client.get("/v1/dashboard/balance", headers=_auth(secret)).json()
    assert balance["balance_usd"] == "2" and balance["held_usd"] == "0.00011" and balance["available_usd"] == "1.99989"
    platform.record_usage("req-1", adm, "messages", "qwen3-5-4b", 1000, 500, 100, 10)
    usage = client.get("/v1/dashboard/usage", headers=_auth(secret)).json()
    assert [u["request_id"] for u in usage["data"]] == ["req-1"]
    assert usage["data"][0]["cost_usd"] == "0.000037"  # 500x40 + 500x20 + 100x70 nano-dollars
    assert client.get("/v1/dashboard/balance", headers=_auth(secret)).json()["balance_usd"] == "1.999963"
    assert client.get("/v1/dashboard/usage?limit=0", headers=_auth(secret)).status_code == 400


def test_admin_sees_and_manages_all_accounts(client: TestClient, platform: Platform) -> None:
    _, admin = platform.create_key("root", admin=True)
    r = client.post("/v1/dashboard/accounts", headers=_auth(admin), json={"account": "team"})
    assert r.status_code == 201 and r.json()["credit_limited"] is True
    r = client.post("/v1/dashboard/credits", headers=_auth(admin), json={"account": "team", "amount_usd": "3.5"})
    assert r.status_code == 200 and r.json()["balance_usd"] == "3.5"
    accounts = client.get("/v1/dashboard/accounts", headers=_auth(admin)).json()["data"]
    assert {a["id"] for a in accounts} == {"default", "team"}
    r = client.post("/v1/dashboard/keys", headers=_auth(admin), json={"name": "t", "account": "team"})
    assert r.status_code == 201 and r.json()["account"] == "team"
    assert client.get("/v1/dashboard/keys?account=team", headers=_auth(admin)).json()["data"][0]["name"] == "t"
    assert client.post("/v1/dashboard/credits", headers=_auth(admin), json={"account": "team", "amount_usd": "x"}
                       ).status_code == 400
    assert client.post("/v1/dashboard/accounts", headers=_auth(admin), json={"account": "team"}).status_code == 409
