"""`budget:` the experimental keyframe budget of student calls."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class BudgetConfig(Section):
    enabled: bool = Field(False, description="Experimental: gate every decoded frame and let the keyframe budget pick student frames (instead of sampling to sample_fps first). See docs/GATE.md for what it measured.")
    max_calls_per_min: int = Field(24, ge=1, le=3600, description="Student calls per camera per minute at most, outside safety (the first frame, global changes and heartbeats always go).")
    min_spacing_s: float = Field(1.0, ge=0, le=3600, description="Source seconds between two budgeted student calls at least.")
    burst: int = Field(3, ge=1, le=600, description="Calls that may be saved up in quiet times and spent at once when something starts.")
    quiet_s: float = Field(2.0, gt=0, le=3600, description="A change after this many source seconds without one starts a new episode; its first frame is always sent (when the budget allows).")
    peak_factor: float = Field(3.0, gt=1.0, le=100, description="Within an episode, send a frame whose change is this many times stronger (salience, weighted toward the centre) than the strongest one sent so far in it.")
    refresh_s: float = Field(3.0, gt=0, le=3600, description="During a long episode, send a frame at least this often unless it is a near-duplicate or weak (see weak_ratio).")
    duplicate_iou: float = Field(0.5, ge=0.0, le=1.0, description="A changing region overlapping the last sent one by at least this much (intersection over union) is a near-duplicate.")
    onset_confirm_s: float = Field(0.4, ge=0, le=60, description="An episode's first frame is sent once its change has lasted this long (source seconds): the mover is in view, and flicker shorter than this sends nothing.")
    active_refresh_s: float = Field(2.0, gt=0, le=3600, description="While an episode's change stays strong (see active_ratio), send a frame at least this often even when its region is a near-duplicate: an event of a second or more inside busy motion (a fall mid-activity) gets a frame.")
    active_ratio: float = Field(0.5, ge=0.0, le=100, description="Change is strong when its quality is at least this share of the strongest frame sent in the episode.")
    weak_ratio: float = Field(0.2, ge=0.0, le=1.0, description="Change weaker than this share of the strongest frame sent in the episode gets no refresh (someone standing nearly still).")
    max_silence_s: float = Field(10.0, gt=0, le=3600, description="During an episode, send a changed frame at least this often whatever it shows (weak or near-duplicate): the episode's own heartbeat.")
    global_repeat_s: float = Field(1.5, ge=0, le=3600, description="After a global-change frame was sent, the next one waits at least this long (source seconds): a camera being moved or a shaky feed changes the whole view several times a second, and one look per interval follows it. A global change is never dropped, only held until then.")
