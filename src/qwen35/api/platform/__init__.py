"""qwen35.api.platform: the dashboard HTTP API (keys, balance, usage, accounts, credits) and GET /v1/pricing.

Mount with `app.include_router(build_platform_router())` in an app whose `app.state.platform` is a Platform.
Imports qwen35.platform only (plus FastAPI/pydantic).
"""

from qwen35.api.platform.routes import build_platform_router

__all__ = ["build_platform_router"]
