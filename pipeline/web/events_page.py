"""The events list: newest first, paged, filtered by camera, type, severity, review status and start time;
the rows re-fetch themselves (htmx polling) while a run is writing the folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.web.context import ReviewContext
from pipeline.web.index import HUMAN_STATUS, EventFilter, EventRow
from pipeline.web.security import url_path_in

PER_PAGE = 50
#: The review statuses the filter offers: the teacher's, then a person's.
STATUSES = ("needs_person", *HUMAN_STATUS.values(), "not_reviewed", "pending_review", "confirmed", "dismissed", "unverified")
_FILTER_KEYS = ("camera", "type", "severity", "status", "from", "to")

Render = Callable[..., Response]


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def parse_filter(request: Request) -> tuple[EventFilter, int, dict[str, str]]:
    q = request.query_params
    given = {k: q[k] for k in _FILTER_KEYS if q.get(k)}
    flt = EventFilter(camera=given.get("camera"), type=given.get("type"), severity=given.get("severity"),
                      status=given.get("status"), start_from=_number(given.get("from")), start_to=_number(given.get("to")))
    try:
        page = max(1, int(q.get("page", "1")))
    except ValueError:
        page = 1
    return flt, page, given


def snapshot_url(out_dir: Path, event_id: str, snapshot: str | None) -> str | None:
    """The /files/ URL of an event's snapshot (also when the run folder was moved since)."""
    rel = url_path_in(out_dir, snapshot) or url_path_in(out_dir, str(out_dir / "snapshots" / f"{event_id}.jpg"))
    return f"/files/{rel}" if rel else None


def row_view(ctx: ReviewContext, row: EventRow) -> dict[str, Any]:
    return {"row": row, "thumb": snapshot_url(ctx.out_dir, row.id, row.snapshot)}


def routes(ctx: ReviewContext, render: Render) -> list[Route]:
    def listing(request: Request, template: str) -> Response:
        ctx.refresh()
        flt, page, given = parse_filter(request)
        result = ctx.index.events(flt, page, PER_PAGE)
        return render(request, template, page=result, rows=[row_view(ctx, r) for r in result.rows], filters=given,
                      query=urlencode(given), cameras=ctx.index.distinct("camera"), types=ctx.index.distinct("type"),
                      severities=ctx.index.distinct("severity"), statuses=STATUSES,
                      page_url=lambda n: "/?" + urlencode({**given, "page": n}))

    def events(request: Request) -> Response:
        return listing(request, "events.html")

    def rows(request: Request) -> Response:
        return listing(request, "_rows.html")

    return [Route("/", events, name="events"), Route("/events/rows", rows, name="event_rows")]
