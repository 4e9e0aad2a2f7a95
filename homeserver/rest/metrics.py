"""``GET /metrics``: Prometheus text exposition of this process's metrics (prometheus-client registry)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def register_metrics(router: Any) -> None:
    """Register ``GET /metrics`` on ``router``: the default prometheus-client registry as Prometheus text (200).
    Not part of the Matrix spec.
    """
    async def on_get(request: Any) -> tuple[int, None]:
        data = generate_latest()
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        request.write(data)
        request.finish()
        return 200, None

    router.register("GET", r"/metrics", on_get, "metrics")
