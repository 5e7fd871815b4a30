"""Feedback: a person marks an event `false alarm` or `confirmed` (with an optional note).

The verdict is stored as a human verdict in the agreement store (ranked above the teacher's for
calibration and dataset export), counted by the adaptive thresholds' false-positive feedback
(the run's controller when the page runs inside a run; otherwise the shared state file directly),
and published as an event update on MQTT when MQTT is configured."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pipeline.learning.agreement_store import HumanVerdict
from pipeline.records import Event, ReviewStatus, VerdictKind
from pipeline.incidents.thresholds import ThresholdController
from pipeline.sinks.decision_log import EscalationSent
from pipeline.web.context import ReviewContext
from pipeline.web.event_page import event_view
from pipeline.web.security import CSRF_COOKIE, CSRF_FIELD, csrf_ok

log = logging.getLogger("edgewatch.web.feedback")

VERDICTS = {"false_alarm": VerdictKind.DISMISSED, "confirmed": VerdictKind.CONFIRMED}
MAX_NOTE = 1000

Render = Callable[..., Response]


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    verdict: HumanVerdict
    threshold_reason: str | None
    """The escalation reason the thresholds counted it under (None: an activity, which moves no threshold)."""
    published: bool


def threshold_reason(event: Mapping[str, Any], escalation_lines: Sequence[EscalationSent]) -> str | None:
    """Which escalation reason the verdict speaks to: the event's safety escalation, else its first one;
    an alert nobody escalated counts as its safety flag."""
    reasons = [str(line.reason) for line in escalation_lines if line.reason]
    safety = [r for r in reasons if r.startswith("safety")]
    if safety or reasons:
        return (safety or reasons)[0]
    return f"safety:{event.get('type')}" if event.get("severity") == "alert" else None


def event_from_json(data: Mapping[str, Any]) -> Event:
    end = data.get("end")
    return Event(id=str(data["id"]), camera=str(data["camera"]), type=str(data["type"]),
                 severity="alert" if data.get("severity") == "alert" else "activity", phase="update",
                 state=str(data.get("state", "")), start=float(data["start"]), end=None if end is None else float(end),
                 flags=tuple(str(f) for f in data.get("flags", ())), peak_confidence=float(data.get("peak_confidence") or 0.0),
                 reasons=tuple(str(r) for r in data.get("reasons", ())), review=ReviewStatus(data.get("review", "not_reviewed")),
                 explanation=str(data.get("explanation", "")), snapshot=data.get("snapshot"),
                 previous_id=data.get("previous_id"))


def record_feedback(ctx: ReviewContext, event_id: str, choice: str, note: str) -> FeedbackResult:
    """Store, count and publish a person's verdict on an event."""
    if choice not in VERDICTS:
        raise HTTPException(400, "verdict must be false_alarm or confirmed")
    ctx.refresh()
    event = ctx.index.event(event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id}")
    kind = VERDICTS[choice]
    camera = str(event["camera"])
    escalation_ids = ctx.escalation_ids(event)
    flags = [str(f) for f in event.get("flags", ())] or ([str(event["type"])] if event.get("severity") == "alert" else [])
    verdict = ctx.store.add_human_verdict(event_id, camera, kind, flags if kind == VerdictKind.CONFIRMED else (),
                                          note.strip()[:MAX_NOTE], escalation_ids)
    ctx.refresh()
    lines = [line for e in escalation_ids for line in ctx.index.decisions_by_ref(e) if isinstance(line, EscalationSent)]
    reason = threshold_reason(event, lines)
    if reason is not None and ctx.settings.adaptive.enabled:
        _count_in_thresholds(ctx, camera, flags, reason, kind, float(event.get("end") or event.get("start") or 0.0))
    published = False
    if ctx.mqtt is not None:
        label = "a false alarm" if kind == VerdictKind.DISMISSED else "confirmed"
        update = event_from_json(event)
        review = ReviewStatus.DISMISSED if kind == VerdictKind.DISMISSED else ReviewStatus.CONFIRMED
        ctx.mqtt.publish_event(replace(update, review=review,
                                       reasons=update.reasons + (f"a person marked it {label} on the review page",)))
        published = True
    log.info("%s: a person marked %s %s", camera, event_id, choice)
    return FeedbackResult(verdict, reason, published)


def _count_in_thresholds(ctx: ReviewContext, camera: str, flags: list[str], reason: str, kind: VerdictKind,
                         timestamp: float) -> None:
    running = ctx.controllers.get(camera)
    if running is not None:
        running.submit_verdict(flags, reason, kind)  # counted and saved on the runner's thread
        return
    controller = ThresholdController(ctx.settings, camera, ctx.clock, live=True)
    controller.update(timestamp)  # the period in force now
    controller.record_verdict(flags, reason, kind, timestamp)
    controller.save()


def routes(ctx: ReviewContext, render: Render) -> list[Route]:
    async def feedback(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.cookies.get(CSRF_COOKIE), str(form.get(CSRF_FIELD) or "")):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        event_id = request.path_params["event_id"]
        await run_in_threadpool(record_feedback, ctx, event_id, str(form.get("verdict") or ""), str(form.get("note") or ""))
        if request.headers.get("HX-Request"):
            view = await run_in_threadpool(event_view, ctx, event_id)
            return render(request, "_feedback.html", **view)
        return RedirectResponse(f"/events/{event_id}", status_code=303)

    return [Route("/events/{event_id}/feedback", feedback, methods=["POST"], name="feedback")]
