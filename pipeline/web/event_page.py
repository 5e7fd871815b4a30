"""An event's page: its snapshot, the keyframes the teacher saw, the student's timeline, the decision
record (why it escalated, thresholds in force, queue depth), the teacher's verdict and explanation,
the prompt version, and the feedback form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.sinks.keyframe_archive import read_manifest, safe_name
from pipeline.sinks.decision_log import EscalationSent, FrameDecision, VerdictReceived
from pipeline.web.context import ReviewContext
from pipeline.web.events_page import snapshot_url
from pipeline.web.index import HUMAN_STATUS
from pipeline.web.security import url_path_in

#: Timeline lines shown at most (a long event keeps its first ones; the log has the rest).
TIMELINE_LIMIT = 300

Render = Callable[..., Response]


def keyframes_of(ctx: ReviewContext, camera: str, escalation_id: str) -> list[dict[str, Any]]:
    """The keyframes the teacher saw: from the run's keyframe archive, else from the agreement store."""
    folder = ctx.out_dir / "keyframes"
    manifest = read_manifest(folder, escalation_id)
    if manifest is not None:
        out = []
        for k in manifest["keyframes"]:
            rel = url_path_in(ctx.out_dir, str(folder / safe_name(escalation_id) / str(k.get("file", ""))))
            if rel:
                out.append({"url": f"/files/{rel}", "t": k.get("t"), "frame": k.get("frame")})
        return out
    for record in ctx.store.records(camera=camera):
        if record.escalation_id == escalation_id:
            return [{"url": f"/files/{rel}", "t": k.timestamp, "frame": k.frame_index}
                    for k in record.keyframes for rel in [url_path_in(ctx.out_dir, str(k.path))] if rel]
    return []


def escalation_view(ctx: ReviewContext, camera: str, escalation_id: str) -> dict[str, Any]:
    lines = ctx.index.decisions_by_ref(escalation_id)
    escalation = next((d for d in lines if isinstance(d, EscalationSent)), None)
    verdict = next((d for d in lines if isinstance(d, VerdictReceived)), None)
    trigger = None
    if escalation is not None and isinstance(escalation.t, (int, float)):
        t = float(escalation.t)
        trigger = next((d for d in ctx.index.decisions(camera, ["decision"], t, t) if isinstance(d, FrameDecision) and d.escalate),
                       None)
    # The template shows the verdict as the teacher gave it (the `Verdict` record's JSON) and how long it waited.
    shown = None if verdict is None else {**verdict.verdict, "wait_s": verdict.wait_s}
    return {"id": escalation_id, "line": escalation, "verdict": shown, "trigger": trigger,
            "keyframes": keyframes_of(ctx, camera, escalation_id)}


def event_view(ctx: ReviewContext, event_id: str) -> dict[str, Any]:
    ctx.refresh()
    event = ctx.index.event(event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id}")
    camera = str(event.get("camera"))
    start = float(event.get("start") or 0.0)
    end = event.get("end")
    escalations = [escalation_view(ctx, camera, e) for e in ctx.escalation_ids(event)]
    timeline = ctx.index.decisions(camera, ["decision", "transition"], start - ctx.settings.window.window_s,
                                   None if end is None else float(end), limit=TIMELINE_LIMIT)
    prompts = sorted({str(d.student.get("prompt_version")) for d in timeline
                      if isinstance(d, FrameDecision) and isinstance(d.student, dict) and d.student.get("prompt_version")})
    human = ctx.store.human_verdicts().get(event_id)
    return {"event": event, "snapshot": snapshot_url(ctx.out_dir, event_id, event.get("snapshot")),
            "escalations": escalations, "timeline": timeline, "timeline_full": len(timeline) >= TIMELINE_LIMIT,
            "prompt_versions": prompts, "human": human,
            "human_status": HUMAN_STATUS.get(human.verdict.value) if human else None}


def routes(ctx: ReviewContext, render: Render) -> list[Route]:
    def detail(request: Request) -> Response:
        return render(request, "event.html", **event_view(ctx, request.path_params["event_id"]))

    return [Route("/events/{event_id}", detail, name="event")]
