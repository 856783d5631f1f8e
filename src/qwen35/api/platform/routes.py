"""HTTP routes of the dashboard: own keys (list/create/revoke), own balance and usage, admin views, pricing.

Owns: `build_platform_router()`. Imports qwen35.platform, FastAPI and api.auth_throttle (which imports nothing of
qwen35), so the router works in any app that puts a Platform on `app.state.platform` (or is given one); failed
sign-ins count against the client's address like failed /v1 authentication, and a store outage is a 503. Errors use the OpenAI error
envelope and are rendered here, so the router never depends on an app's exception handlers (and never sends 422).
Invariant: a non-admin key sees and changes only its own account; admin-only routes answer 403 to others;
`GET /v1/pricing` is public (the playground shows prices before sign-in).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from qwen35.api.auth_throttle import throttle_of
from qwen35.api.platform.schemas import (
    AddCreditsBody,
    CreateAccountBody,
    CreateKeyBody,
    account_json,
    key_json,
    price_json,
    usage_json,
)
from qwen35.platform import (
    BUCKETS_MS,
    Conflict,
    InvalidInput,
    KeyInfo,
    KeyLimits,
    NotFound,
    Platform,
    PlatformError,
    StoreUnavailable,
    nanos_to_usd,
)

Body = TypeVar("Body", bound=BaseModel)
_MAX_USAGE_PAGE = 1000


class _HttpError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.retry_after_s = retry_after_s

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        headers = None
        if self.retry_after_s is not None:
            headers = {"retry-after": str(max(1, round(self.retry_after_s))),
                       "retry-after-ms": str(int(self.retry_after_s * 1000))}
        return JSONResponse(body, status_code=self.status, headers=headers)


def _store_down(exc: StoreUnavailable) -> _HttpError:
    return _HttpError(503, f"The platform store is unavailable; retry shortly. ({exc})", "server_error",
                      "store_unavailable", retry_after_s=5.0)


def _secret(request: Request) -> str | None:
    api_key = request.headers.get("x-api-key", "").strip()
    if api_key:
        return api_key
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def build_platform_router(platform: Platform | None = None) -> APIRouter:
    """The dashboard router; uses `platform`, else `request.app.state.platform`."""
    router = APIRouter(tags=["platform"])

    def store(request: Request) -> Platform:
        return platform if platform is not None else request.app.state.platform

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def caller(request: Request) -> KeyInfo:
        secret = _secret(request)
        if secret is None:
            failed(request)
            raise _HttpError(401, "You didn't provide an API key (Authorization: Bearer KEY or x-api-key).",
                             "invalid_request_error")
        key = await call(store(request).authenticate, secret)
        if key is None:
            failed(request)
            raise _HttpError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return key

    def failed(request: Request) -> None:
        """A failed sign-in counts against the client's address (api.auth_throttle, shared with /v1)."""
        address = request.client.host if request.client is not None else "unknown"
        wait = throttle_of(request.app.state).failed(address)
        if wait is not None:
            raise _HttpError(429, f"Too many failed authentication attempts from your address; retry in "
                             f"{round(wait)} s.", "requests", "too_many_failed_auth_attempts", retry_after_s=wait)

    def require_admin(key: KeyInfo) -> None:
        if not key.is_admin:
            raise _HttpError(403, "This endpoint needs an admin key.", "permission_error", "admin_required")

    def scope(key: KeyInfo, requested: str | None) -> str | None:
        """The account a request may look at: its own; an admin may name any (or all with None)."""
        if requested is not None and requested != key.account_id:
            require_admin(key)
            return requested
        return requested if key.is_admin else key.account_id

    async def body(request: Request, model: type[Body]) -> Body:
        try:
            raw = await request.body()
            return model.model_validate(json.loads(raw or b"{}"))
        except json.JSONDecodeError:
            raise _HttpError(400, "The request body is not valid JSON.", "invalid_request_error") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first.get("loc", ())) or None
            raise _HttpError(400, f"Invalid value for {param}: {first.get('msg')}", "invalid_request_error",
                             "invalid_value", param) from None

    def handle(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[JSONResponse]]:
        async def wrapper(request: Request) -> JSONResponse:
            try:
                result = await fn(request)
            except _HttpError as exc:
                return exc.response()
            except NotFound as exc:
                return _HttpError(404, str(exc), "invalid_request_error", "not_found").response()
            except Conflict as exc:
                return _HttpError(409, str(exc), "invalid_request_error", "conflict").response()
            except InvalidInput as exc:
                return _HttpError(400, str(exc), "invalid_request_error", "invalid_value").response()
            except StoreUnavailable as exc:
                return _store_down(exc).response()
            except PlatformError as exc:
                return _HttpError(500, f"platform error: {exc}", "server_error").response()
            return result if isinstance(result, JSONResponse) else JSONResponse(result)

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        return wrapper

    def query_int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
        text = request.query_params.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise _HttpError(
                400, f"{name} must be an integer", "invalid_request_error", "invalid_value", name
            ) from None
        if not low <= value <= high:
            raise _HttpError(400, f"{name} must be in {low}..{high}", "invalid_request_error", "invalid_value", name)
        return value

    @handle
    async def pricing(request: Request) -> Any:
        """The rate card in force now (public)."""
        cards = await call(store(request).list_prices)
        return {"object": "list", "data": [price_json(c) for c in cards]}

    @handle
    async def list_keys(request: Request) -> Any:
        key = await caller(request)
        account = scope(key, request.query_params.get("account"))
        keys = await call(store(request).list_keys, account)
        return {"object": "list", "data": [key_json(k) for k in keys]}

    @handle
    async def create_key(request: Request) -> Any:
        key = await caller(request)
        params = await body(request, CreateKeyBody)
        if params.admin:
            require_admin(key)
        account = scope(key, params.account) or key.account_id
        expires = datetime.fromtimestamp(params.expires_at, tz=UTC) if params.expires_at else None
        limits = KeyLimits(params.requests_per_minute, params.tokens_per_minute, params.max_concurrent)
        info, secret = await call(
            store(request).create_key, params.name, account=account, admin=params.admin, expires_at=expires,
            limits=limits,
        )
        return JSONResponse({**key_json(info), "secret": secret}, status_code=201)

    @handle
    async def revoke_key(request: Request) -> Any:
        key = await caller(request)
        key_id = request.path_params["key_id"]
        info = await call(store(request).revoke_key, key_id, None if key.is_admin else key.account_id)
        return key_json(info)

    @handle
    async def balance(request: Request) -> Any:
        key = await caller(request)
        account = scope(key, request.query_params.get("account")) or key.account_id
        return account_json(await call(store(request).get_account, account))

    @handle
    async def usage(request: Request) -> Any:
        key = await caller(request)
        account = scope(key, request.query_params.get("account"))
        limit = query_int(request, "limit", 100, 1, _MAX_USAGE_PAGE)
        before = query_int(request, "before", None, 0, 2**62)
        records = await call(
            store(request).list_usage, account=account, key_id=request.query_params.get("key_id"), limit=limit,
            before_ms=before * 1000 if before is not None else None,
        )
        data = [usage_json(r) for r in records]
        total = sum(r.cost_nanos for r in records)
        return {"object": "list", "data": data, "has_more": len(records) == limit,
                "page_cost_usd": f"{nanos_to_usd(total):f}"}

    @handle
    async def usage_series(request: Request) -> Any:
        """Usage per hour or day bucket (UTC-aligned), oldest first, empty buckets included (for charts)."""
        key = await caller(request)
        account = scope(key, request.query_params.get("account"))
        bucket = request.query_params.get("bucket", "hour")
        if bucket not in BUCKETS_MS:
            raise _HttpError(400, "bucket must be hour or day", "invalid_request_error", "invalid_value", "bucket")
        width = BUCKETS_MS[bucket]
        count = query_int(request, "buckets", 24 if bucket == "hour" else 30, 1, 2000) or 1
        now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)
        first = (now_ms // width - count + 1) * width
        rows = await call(
            store(request).usage_buckets, bucket, first, None, account=account,
            key_id=request.query_params.get("key_id"),
        )
        by_start = {r.start_ms: r for r in rows}
        data = []
        for i in range(count):
            start = first + i * width
            r = by_start.get(start)
            data.append({
                "start": start // 1000,
                "requests": r.requests if r else 0,
                "input_tokens": r.input_tokens if r else 0,
                "cached_input_tokens": r.cached_input_tokens if r else 0,
                "output_tokens": r.output_tokens if r else 0,
                "reasoning_tokens": r.reasoning_tokens if r else 0,
                "cost_usd": f"{nanos_to_usd(r.cost_nanos if r else 0):f}",
            })
        return {"object": "list", "bucket": bucket, "bucket_seconds": width // 1000, "data": data}

    @handle
    async def accounts(request: Request) -> Any:
        key = await caller(request)
        require_admin(key)
        return {"object": "list", "data": [account_json(a) for a in await call(store(request).list_accounts)]}

    @handle
    async def create_account(request: Request) -> Any:
        key = await caller(request)
        require_admin(key)
        params = await body(request, CreateAccountBody)
        info = await call(store(request).create_account, params.account, params.credit_limited)
        return JSONResponse(account_json(info), status_code=201)

    @handle
    async def add_credits(request: Request) -> Any:
        key = await caller(request)
        require_admin(key)
        params = await body(request, AddCreditsBody)
        info = await call(store(request).add_credits, params.account, params.amount_usd, params.note)
        return account_json(info)

    router.add_api_route("/v1/pricing", pricing, methods=["GET"], summary="Rate card")
    router.add_api_route("/v1/dashboard/keys", list_keys, methods=["GET"], summary="List own API keys")
    router.add_api_route("/v1/dashboard/keys", create_key, methods=["POST"], summary="Create an API key")
    router.add_api_route("/v1/dashboard/keys/{key_id}", revoke_key, methods=["DELETE"], summary="Revoke an API key")
    router.add_api_route("/v1/dashboard/balance", balance, methods=["GET"], summary="Own credit balance")
    router.add_api_route("/v1/dashboard/usage", usage, methods=["GET"], summary="Own usage records")
    router.add_api_route("/v1/dashboard/usage/series", usage_series, methods=["GET"], summary="Usage per hour/day")
    router.add_api_route("/v1/dashboard/accounts", accounts, methods=["GET"], summary="All accounts (admin)")
    router.add_api_route("/v1/dashboard/accounts", create_account, methods=["POST"], summary="Create account (admin)")
    router.add_api_route("/v1/dashboard/credits", add_credits, methods=["POST"], summary="Add credits (admin)")
    return router
