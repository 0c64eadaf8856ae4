"""The HTTP face of a Service: FastAPI routes, one-line JSON errors, uvicorn."""

from __future__ import annotations

import contextlib
from typing import Any

import uvicorn
from fastapi import FastAPI, Request  # at module level: the routes' annotations are resolved from here
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.live.service import BadRequest, Service
from pipeline.teardown import collect_then_freeze

INLINE_BYTES = 16_384  # requests up to this size (Ames: ~2.3 kB a row) are answered without a worker thread


def create_app(service: Service, *, manage: bool = True):
    """The FastAPI app over `service`; with `manage`, the app starts the service and stops it
    (flushing the prediction log) with its own lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if manage:
            service.start()
        try:
            yield
        finally:
            if manage:
                await run_in_threadpool(service.stop)

    app = FastAPI(title="run-pipeline serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str, arm: str | None = None) -> JSONResponse:
        service.metrics.error(status, arm)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # 404, 405: the same one-line JSON shape as every other error
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(Exception)
    async def failed(request, exc):  # the model's or the service's fault, not the caller's: still one line, counted
        return error(
            500, f"{request.method} {request.url.path}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        return error(
            422,
            f"{request.method} {request.url.path}: {exc.errors()[0].get('msg', 'invalid request') if exc.errors() else 'invalid request'}",
        )

    @app.get("/ping")
    async def ping() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

    @app.get("/version")
    async def version() -> dict[str, Any]:
        return service.versions()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/invocations")
    async def invocations(request: Request):
        body = await request.body()
        args = (
            body,
            request.headers.get("content-type", ""),
            request.headers.get("x-request-id"),
            request.headers.get("x-route-key"),
        )
        try:
            # A few rows are answered on the event loop: a hop to a worker thread and back cost
            # more than their answer holds the loop (the model holds the GIL either way).
            doc = service.answer(*args) if len(body) <= INLINE_BYTES else await run_in_threadpool(service.answer, *args)
        except BadRequest as e:
            return error(e.status, str(e), e.arm)
        return JSONResponse(doc, headers={"X-Request-Id": doc["request_id"]})

    @app.post("/feedback")
    async def feedback(request: Request):
        body = await request.body()
        try:
            return await run_in_threadpool(service.feedback, body)
        except BadRequest as e:
            return error(e.status, str(e))

    return app


def serve(service: Service, host: str, port: int) -> None:
    """Run the app on host:port until SIGINT or SIGTERM; the prediction log is flushed on the way out."""
    # What is loaded by now (MLflow, the models, pandas) lives as long as the server: frozen out
    # of the garbage collector's view, a full collection no longer traces it. Without this, one
    # such collection every few hundred requests stalled an answer ~250 ms here (p99 9x p50).
    collect_then_freeze()

    uvicorn.run(create_app(service), host=host, port=port, log_level="warning", access_log=False, workers=1)
