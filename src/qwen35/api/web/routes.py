"""HTTP routes of the browser UI: the playground (`/`, `/playground`), the dashboard (`/dashboard`), their static
assets (`/static/...`) and `GET /v1/capabilities`, the public facts the playground builds its form from.

Owns the pages' security headers. Imports FastAPI, serving.sampling (the one table of defaults and ranges) and the
static files shipped in the wheel (package data). The pages use only the documented HTTP API, with the key the
user typed (kept in sessionStorage by the page, never sent anywhere but this origin).
Invariant: every page and asset is served with a strict Content-Security-Policy: scripts, styles, fonts and fetches
from this origin only, no inline script or style, no framing; assets never leave the package directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from qwen35.serving.sampling import MAX_STOP, PARAMETERS

STATIC_DIR = Path(str(resources.files("qwen35.api.web") / "static"))
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".woff2": "font/woff2",
    ".svg": "image/svg+xml", ".png": "image/png", ".json": "application/json", ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8", "": "text/plain; charset=utf-8",
}
MEDIA_REASON = "This server does not accept images or video yet: it serves the text model only."
EFFORTS = {"none": 0, "low": 1024, "medium": 4096, "high": 16384, "max": 32768}


def _media(core: Any) -> dict[str, Any]:
    """What uploads the engine takes. A serving core that accepts media says so with `accepts_media`
    (e.g. {"image": True, "video": True}); until then the playground shows the control disabled, with the reason."""
    declared = getattr(core, "accepts_media", None) or {}
    image, video = bool(declared.get("image")), bool(declared.get("video"))
    return {"image": image, "video": video, "reason": None if image or video else MEDIA_REASON}


def page(name: str) -> FileResponse:
    """A packaged HTML page with the strict CSP."""
    return FileResponse(STATIC_DIR / name, media_type=_TYPES[".html"], headers={**SECURITY_HEADERS,
                        "Cache-Control": "no-cache"})


def build_web_router() -> APIRouter:
    router = APIRouter()

    async def playground() -> Response:
        return page("playground.html")

    async def dashboard() -> Response:
        return page("dashboard.html")

    async def static(path: str) -> Response:
        target = (STATIC_DIR / path).resolve()
        if not target.is_relative_to(STATIC_DIR.resolve()) or not target.is_file():
            return Response("not found", status_code=404, headers=SECURITY_HEADERS)
        media_type = _TYPES.get(target.suffix, "application/octet-stream")
        # no-cache: the browser revalidates (ETag), so an upgraded wheel's assets are picked up at once
        return FileResponse(target, media_type=media_type, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    async def capabilities(request: Request) -> Any:
        """Public: the served model, its context, every request parameter's default and range, thinking efforts,
        which APIs the playground can call, and whether media uploads are accepted."""
        app = request.app
        params = {
            name: {"default": limit.default, "min": limit.low, "max": limit.high, "integer": limit.integer}
            for name, limit in PARAMETERS.items()
        }
        return JSONResponse({
            "object": "capabilities",
            "model": app.state.settings.model_id,
            "max_model_len": app.state.core.max_model_len,
            "parameters": params,
            "max_stop": MAX_STOP,
            "reasoning_efforts": EFFORTS,
            "apis": ["chat.completions", "responses", "messages"],
            "logprobs": {"chat.completions": True, "responses": True, "messages": False},
            "media": _media(app.state.core),
            "web_search": getattr(app.state.core, "web_search", None) is not None,
        })

    router.add_api_route("/", playground, methods=["GET"], include_in_schema=False)
    router.add_api_route("/playground", playground, methods=["GET"], include_in_schema=False)
    router.add_api_route("/dashboard", dashboard, methods=["GET"], include_in_schema=False)
    router.add_api_route("/static/{path:path}", static, methods=["GET"], include_in_schema=False)
    router.add_api_route("/v1/capabilities", capabilities, methods=["GET"], summary="Server capabilities (public)")
    return router
