"""The review page's ASGI app: the page modules' routes, files from inside the run folder, htmx from
the package, and the guard (token, CSRF cookie, security headers) in front of everything."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from pipeline.web import cameras_page, event_page, events_page, feedback
from pipeline.web.context import ReviewContext
from pipeline.web.security import CSRF_COOKIE, TOKEN_COOKIE, new_csrf_token, safe_file, token_matches

log = logging.getLogger("edgewatch.web")

#: No inline script or style runs, whatever text a model wrote into an event.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def templates() -> Jinja2Templates:
    env = Environment(loader=PackageLoader("pipeline.web", "templates"), autoescape=True)
    env.filters["secs"] = lambda v: "–" if v is None else f"{float(v):.1f} s"
    env.filters["conf"] = lambda v: "–" if v is None else f"{float(v):.2f}"
    env.filters["label"] = lambda v: str(v or "").replace("_", " ")
    return Jinja2Templates(env=env)


class Guard(BaseHTTPMiddleware):
    """Token (when set) on every request; a CSRF cookie for the forms; a same-origin check on POSTs."""

    def __init__(self, app: Any, ctx: ReviewContext) -> None:
        super().__init__(app)
        self.ctx = ctx

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        token = self.ctx.token
        if token:
            offered = request.query_params.get("token")
            if offered is not None:
                if not token_matches(offered, token):
                    return _denied()
                rest = {k: v for k, v in request.query_params.items() if k != "token"}
                response: Response = RedirectResponse(request.url.path + ("?" + urlencode(rest) if rest else ""), 303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return response
            bearer = request.headers.get("authorization", "")
            given = bearer[7:] if bearer.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE)
            if not token_matches(given, token):
                return _denied()
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
                return HTMLResponse("cross-origin request refused", 403)
        csrf = request.cookies.get(CSRF_COOKIE)
        fresh = None if csrf else new_csrf_token()
        request.state.csrf = csrf or fresh
        response = await call_next(request)
        if fresh:
            response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="strict")
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        return response


def _denied() -> Response:
    return HTMLResponse("<!doctype html><title>edgewatch review</title><p>This page needs its access token: "
                        "open it as <code>http://HOST:PORT/?token=YOUR_TOKEN</code>.</p>", 401)


def create_app(ctx: ReviewContext) -> Starlette:
    tpl = templates()

    def render(request: Request, name: str, **values: Any) -> Response:
        values.setdefault("live", ctx.is_live())
        return tpl.TemplateResponse(request, name, {"csrf": request.state.csrf, "out_dir": str(ctx.out_dir), **values})

    def files(request: Request) -> Response:
        path = safe_file(ctx.out_dir, request.path_params["path"])
        if path is None:
            raise HTTPException(404, "no such image in the run folder")
        return FileResponse(path)

    def snapshots(request: Request) -> Response:
        path = safe_file(ctx.out_dir / "snapshots", request.path_params["path"])
        if path is None:
            raise HTTPException(404, "no such snapshot")
        return FileResponse(path)

    routes = [
        *events_page.routes(ctx, render),
        *feedback.routes(ctx, render),
        *event_page.routes(ctx, render),
        *cameras_page.routes(ctx, render),
        Route("/files/{path:path}", files, name="files"),
        Route("/snapshots/{path:path}", snapshots, name="snapshots"),
        Mount("/static", StaticFiles(packages=[("pipeline.web", "static")]), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, ctx=ctx)])
