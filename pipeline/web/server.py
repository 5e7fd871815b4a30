"""Running the review page: on a background thread inside a run (``web.enabled``), or in the
foreground as ``edgewatch serve --out DIR`` until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from pipeline.clock import Clock, SystemClock
from pipeline.config.settings import Settings
from pipeline.errors import EdgewatchError
from pipeline.web.app import create_app
from pipeline.web.context import ReviewContext
from pipeline.web.security import check_bind

log = logging.getLogger("edgewatch.web")

START_TIMEOUT_S = 10.0


class ReviewServer:
    """uvicorn on its own thread (which leaves signal handling to the main thread)."""

    def __init__(self, ctx: ReviewContext, host: str, port: int) -> None:
        check_bind(host, ctx.token)
        self.ctx = ctx
        self.host = host
        config = uvicorn.Config(create_app(ctx), host=host, port=port, log_level="warning", access_log=False,
                                lifespan="off", server_header=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="review-page", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            self.close()
            raise EdgewatchError(f"the review page could not listen on {host}:{port} (in use, or not an address here)")

    @property
    def port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def close(self, timeout_s: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self.ctx.close()


def start_review_server(settings: Settings, out_dir: Path, *, clock: Clock | None = None, **live: Any) -> ReviewServer:
    """The review page inside a run (``web.enabled``): ``live`` carries health, latest_jpeg, controllers, mqtt."""
    ctx = ReviewContext.open(out_dir, settings, clock or SystemClock(), embedded=True, **live)
    server = ReviewServer(ctx, settings.web.host, settings.web.port)
    log.warning("review page on %s", server.url)
    return server
