"""What the monitor believes is in view: the newest report's safety triggers (matched as the escalation
policy matches them), less what the teacher's dismissals covered; the activity; and the k-of-n
persistence read from the thresholds in force.  A part of `states.monitor.CameraMonitor`, kept apart
because reading evidence is one job and moving the state machine another."""

from __future__ import annotations

from pipeline.config.states import StatesConfig
from pipeline.incidents.escalation import ThresholdSource
from pipeline.incidents.evidence import gate_corroborated, match_safety, persisting
from pipeline.incidents.verdicts import Coverage, uncover, uncovered
from pipeline.records import SafetyEvidence, WindowStats

#: Distinct flag sets whose trigger matching is remembered (flag sets repeat frame after frame).
_TRIGGER_CACHE_SIZE = 1024


class EvidenceView:
    """The monitor's reading of the window; `CameraMonitor` sets these attributes and keeps them current."""

    cfg: StatesConfig
    triggers: frozenset[str]
    thresholds: ThresholdSource
    _coverages: tuple[Coverage, ...]
    """What the teacher's dismissals covered (`pipeline.incidents.verdicts`)."""
    _carried: int
    """Gate-skipped frames since the last analysed one that carried its safety flags forward."""
    _trigger_cache: dict[frozenset[str], frozenset[str]]

    def _triggers_in(self, flags: frozenset[str]) -> frozenset[str]:
        """The canonical trigger names ``flags`` speak of, matched exactly as the escalation
        policy matches them (synonyms, negation: ``person_fall`` → fall, ``no_fire`` → nothing)."""
        if not flags:
            return frozenset()
        hit = self._trigger_cache.get(flags)
        if hit is None:
            if len(self._trigger_cache) >= _TRIGGER_CACHE_SIZE:
                self._trigger_cache.clear()
            hit = match_safety(flags, (), self.triggers)
            self._trigger_cache[flags] = hit
        return hit

    def _evidence_triggers(self, stats: WindowStats) -> frozenset[str]:
        """The newest frame's safety triggers, as the window read them (flags and observations)."""
        return stats.evidence.triggers & self.triggers if stats.evidence is not None else frozenset()

    def _live_now(self, stats: WindowStats) -> frozenset[str]:
        """Safety triggers of the newest report that no dismissal covers (a gate-skipped frame
        shows that same report)."""
        hits = self._evidence_triggers(stats)
        if hits and self._coverages and stats.evidence is not None:
            hits = uncovered(hits, stats.evidence.timestamp, stats.evidence.confidence, self._coverages)
        return hits

    def _activity_kind(self, stats: WindowStats) -> str | None:
        evidence = stats.evidence
        if evidence is not None and evidence.activity is not None and stats.confidence_last >= self.cfg.activity_min_confidence:
            return evidence.activity
        if self._live_now(stats):
            return "motion"
        return None

    def _activity_flags(self, stats: WindowStats) -> frozenset[str]:
        """The report's flags an activity event carries: not the safety ones.  A safety flag is its
        alert event's business, with that event's own start; on an activity line that began long
        before, it would date the hazard to the activity's start."""
        return frozenset(f for f in stats.active_flags if not self._triggers_in(frozenset({f})))

    def _recent_uncovered(self, stats: WindowStats) -> tuple[SafetyEvidence, ...]:
        """The last n reports' evidence (gate-skipped frames repeating the newest), less what
        the teacher's dismissals covered."""
        n = self.thresholds.current().persistence_n
        recent = stats.recent_evidence[-n:]
        if self._carried and recent:
            recent = (recent + (recent[-1],) * min(self._carried, n))[-n:]
        return uncover(recent, self._coverages)

    def _persisting(self, stats: WindowStats | None) -> dict[str, int]:
        """Triggers in ≥ k of the last n reports (the shared rule, `evidence.persisting`), and a
        tamper the gate backs on the newest frame → their count."""
        if stats is None:
            return {}
        rule = self.thresholds.current()
        recent = self._recent_uncovered(stats)
        found = {f: int(round(c)) for f, c in persisting(recent, rule).items() if f in self.triggers}
        # An instant the gate backs (a cut, a covered lens) alerts on its one frame.
        for f in (gate_corroborated(recent[-1]) - found.keys()) if recent else ():
            found[f] = rule.k_for(f)
        return dict(sorted(found.items()))
