"""What one analysed frame says about safety, read once: `SafetyEvidence`.

The student's flags *and* observations are read on whole words and a synonym table, with negation
("no fire", "without smoke") and harmless compounds ("fire exit sign", "smoke detector") left out;
the observations also say whether something is present or moving (person / vehicle / motion); the
change gate adds its reading of a whole-view change (tamper / lighting change).  The window reads
each report once (`EvidenceReader`), and the monitor's guards, the escalation policy, the keyframe
chooser and the learner all read that one record.  The k-of-n persistence rule (`persisting`) is
here too, so the monitor and the policy cannot disagree on what persists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping, Protocol

from pipeline.records import ALWAYS_TRIGGERS, MODEL_ERROR_FLAG, FrameReport, SafetyEvidence, normalise_flag


#: Phrases (space-separated words) that mean each canonical trigger.  A trigger that is not
#: here matches its own words (and a plain plural).
SYNONYMS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "fire": ("fire", "fires", "flame", "flames", "flaming", "burning", "blaze", "blazing", "ablaze"),
    # "haze" is left out on purpose: heat haze, fog and a soft lens are far more common.
    "smoke": ("smoke", "smoky", "smokey", "smoke filled"),
    "fall": ("fall", "falls", "fallen", "fell", "falling", "collapsed", "collapsing", "collapse",
             "lying on the floor", "lying on floor", "lying on the ground", "lying on ground",
             "person down", "man down", "woman down"),
    "weapon": ("weapon", "weapons", "gun", "guns", "handgun", "pistol", "rifle", "shotgun",
               "knife", "knives", "firearm", "firearms", "armed"),
    "intrusion": ("intrusion", "intruder", "intruders", "trespass", "trespassing", "trespasser",
                  "break in", "breaking in", "broke in", "burglar", "burglary"),
    "blood": ("blood", "bleeding", "bloody", "bloodied", "blood stain", "bloodstain"),
    "tamper": ("tamper", "tampered", "tampering", "obstructed", "lens covered", "camera covered"),
})


#: Words that, right after a phrase's last word, turn it into something harmless
#: ("fire exit sign", "smoke detector").
_HARMLESS_AFTER: Mapping[str, frozenset[str]] = MappingProxyType({
    "fire": frozenset({"exit", "alarm", "alarms", "extinguisher", "extinguishers", "hydrant", "escape",
                       "door", "doors", "sign", "signs", "drill", "truck", "engine", "station", "hose",
                       "blanket", "safety", "brigade", "department", "fighter", "fighters", "place"}),
    "smoke": frozenset({"detector", "detectors", "alarm", "alarms", "sensor"}),
    "blood": frozenset({"pressure", "test", "bank", "donation", "orange"}),
    "gun": frozenset({"metal"}),
})


#: Words that, right before a phrase's first word, make it harmless ("glue gun").
_HARMLESS_BEFORE: Mapping[str, frozenset[str]] = MappingProxyType({
    "gun": frozenset({"glue", "nail", "spray", "water", "toy", "heat", "staple", "paint"}),
    "guns": frozenset({"glue", "nail", "spray", "water", "toy"}),
    "knife": frozenset({"butter", "putty", "palette"}),
    "fall": frozenset({"water", "snow", "rain", "night", "leaf"}),
})


_NEGATORS = frozenset({"no", "not", "without", "never", "none", "nor", "nothing", "cannot", "isnt", "arent",
                       "wasnt", "werent", "dont", "doesnt", "didnt", "free"})


#: A negation reaches this many words forward ("no visible open fire").
_NEGATION_REACH = 3


#: Words that end a negation's reach ("no fire but smoke" still matches smoke).  Erring towards
#: a match is deliberate: a missed safety word costs more than a teacher call.
_SCOPE_BREAKERS = frozenset({"but", "however", "yet", "although", "though", "while", "except", "and"})


_CLAUSES = re.compile(r"[.;:!?,()\[\]\n]+")


_WORD = re.compile(r"[a-z0-9]+")


def _clauses(text: str) -> list[list[str]]:
    """Lower-cased words per clause; apostrophes vanish first so "isn't" is one word."""
    cleaned = text.lower().replace("'", "").replace("\u2019", "")
    out = []
    for clause in _CLAUSES.split(cleaned):
        words = _WORD.findall(clause.replace("_", " "))
        if words:
            out.append(words)
    return out


def _negated(words: list[str], start: int) -> bool:
    for back in range(1, _NEGATION_REACH + 1):
        i = start - back
        if i < 0 or words[i] in _SCOPE_BREAKERS:
            return False
        if words[i] in _NEGATORS:
            return True
    return False


def _phrase_hits(words: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    for i in range(len(words) - n + 1):
        if words[i] != phrase[0] or tuple(words[i:i + n]) != phrase:
            continue
        after = words[i + n] if i + n < len(words) else None
        before = words[i - 1] if i > 0 else None
        if after is not None and after in _HARMLESS_AFTER.get(phrase[-1], frozenset()):
            continue
        if before is not None and before in _HARMLESS_BEFORE.get(phrase[0], frozenset()):
            continue
        if _negated(words, i):
            continue
        return True
    return False


@lru_cache(maxsize=256)
def _phrases_for(trigger: str) -> tuple[tuple[str, ...], ...]:
    own = tuple(trigger.replace("_", " ").split())
    phrases = {own, own[:-1] + (own[-1] + "s",)} if own else set()
    phrases.update(tuple(p.split()) for p in SYNONYMS.get(trigger, ()))
    return tuple(sorted(phrases))


def match_safety(flags: Iterable[str], observations: Iterable[str], triggers: Iterable[str]) -> frozenset[str]:
    """The triggers (normalised names) that the flags or observations speak of.

    Matching is on whole words and the synonym table, not substrings: "fireplace" and
    "fire exit sign" are not fire; "no fire" / "without smoke" are negated and do not match.
    """
    texts = [str(f) for f in flags] + [str(o) for o in observations]
    clauses = [c for t in texts for c in _clauses(t)]
    present = {w for words in clauses for w in words}
    found = set()
    for trigger in {normalise_flag(t) for t in triggers if str(t).strip()}:
        phrases = [p for p in _phrases_for(trigger) if p[0] in present]
        if any(_phrase_hits(words, phrase) for words in clauses for phrase in phrases):
            found.add(trigger)
    return frozenset(found)


PERSON_WORDS: frozenset[str] = frozenset({
    "person", "persons", "people", "man", "men", "woman", "women", "child", "children", "kid", "kids",
    "pedestrian", "pedestrians", "someone", "somebody", "human", "humans", "intruder", "worker", "crowd",
})


VEHICLE_WORDS: frozenset[str] = frozenset({
    "vehicle", "vehicles", "car", "cars", "truck", "trucks", "van", "bus", "bicycle", "bicycles", "bike",
    "bikes", "motorcycle", "motorbike", "scooter", "forklift",
})


MOTION_WORDS: frozenset[str] = frozenset({
    "motion", "moving", "moves", "moved", "movement", "walking", "walks", "running", "runs", "animal",
    "animals", "dog", "cat", "bird", "entering", "leaving", "object", "blob",
})


#: Words naming something present or moving.
ACTIVITY_WORDS: frozenset[str] = PERSON_WORDS | VEHICLE_WORDS | MOTION_WORDS


#: Words that negate activity named later in the same clause ("no person", "empty room").
QUIET_WORDS: frozenset[str] = frozenset({
    "no", "not", "nobody", "nothing", "none", "empty", "static", "without", "unchanged", "absent", "vacant",
})


_ACTIVITY_CLAUSES = re.compile(r"[,;.:!?/|]+")


_ACTIVITY_WORD = re.compile(r"[a-z]+")


def activity_kind(observations: Iterable[str]) -> str | None:
    """``person``, ``vehicle`` or ``motion`` when the observations show activity, else None
    (the most specific kind of `activity_kinds`: a person before a vehicle before motion)."""
    found = activity_kinds(observations)
    if "person" in found:
        return "person"
    if "vehicle" in found:
        return "vehicle"
    return "motion" if found else None


def activity_kinds(observations: Iterable[str]) -> frozenset[str]:
    """Every kind of activity (``person``, ``vehicle``, ``motion``) the observations show.

    An observation is split into clauses; a clause shows activity when it names something
    present or moving that no quiet word ("no", "empty", ...) before it negates.
    """
    found: set[str] = set()
    for text in observations:
        for clause in _ACTIVITY_CLAUSES.split(text.lower()):
            negated = False
            for word in _ACTIVITY_WORD.findall(clause):
                if word in QUIET_WORDS:
                    negated = True
                elif not negated and word in ACTIVITY_WORDS:
                    found.add("person" if word in PERSON_WORDS else "vehicle" if word in VEHICLE_WORDS else "motion")
    return frozenset(found)


class EvidenceReader:
    """Reads each report once into a `SafetyEvidence` (one per camera; flag sets repeat frame after
    frame, so their trigger matching is remembered)."""

    #: Distinct (flags, observations) answers whose reading is remembered.
    CACHE_SIZE = 1024

    def __init__(self, triggers: Iterable[str]) -> None:
        self.triggers: frozenset[str] = frozenset(normalise_flag(t) for t in triggers if str(t).strip()) | ALWAYS_TRIGGERS
        self._cache: dict[tuple[frozenset[str], tuple[str, ...]], tuple[frozenset[str], str | None]] = {}

    def read(self, report: FrameReport, confidence: float, gate_hint: str | None) -> SafetyEvidence:
        flags = frozenset(f for f in report.flags if f)
        key = (flags, tuple(report.observations))
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            hit = (match_safety(flags, report.observations, self.triggers), activity_kind(report.observations))
            self._cache[key] = hit
        triggers, activity = hit
        failed = MODEL_ERROR_FLAG in flags and not report.observations and not triggers
        return SafetyEvidence(timestamp=report.timestamp, triggers=triggers, activity=activity, confidence=confidence,
                              failed=failed, gate_hint=gate_hint)

    def triggers_in(self, flags: Iterable[str]) -> frozenset[str]:
        """The canonical triggers a set of flags names (an escalation's or a verdict's), by the same words."""
        flags = frozenset(normalise_flag(f) for f in flags if str(f).strip())
        return match_safety(flags, (), self.triggers) if flags else frozenset()


# --------------------------------------------------------------------------------------
# The persistence rule (one rule for the monitor and the policy)
# --------------------------------------------------------------------------------------

#: A flagged frame whose calibrated confidence is at least this counts as one whole frame of evidence.
FULL_EVIDENCE_PROBABILITY = 0.5


def frame_weight(confidence: float, calibrated: bool) -> float:
    """How much one frame that carries a safety trigger counts towards k (1 on the raw scale)."""
    if not calibrated:
        return 1.0
    return min(1.0, max(0.0, confidence) / FULL_EVIDENCE_PROBABILITY)


class PersistenceRule(Protocol):
    """What the rule needs from the thresholds in force (`escalation.Thresholds` has it)."""

    persistence_n: int
    calibrated: bool

    def k_for(self, flag: str) -> int: ...


def evidence_counts(recent: Sequence[SafetyEvidence], rule: PersistenceRule) -> dict[str, float]:
    """Weighted count of each trigger over the last n frames of ``recent`` (oldest first)."""
    counts: dict[str, float] = {}
    for ev in recent[-rule.persistence_n:]:
        weight = frame_weight(ev.confidence, rule.calibrated)
        for trigger in ev.triggers:
            counts[trigger] = counts.get(trigger, 0.0) + weight
    return counts


def gate_corroborated(evidence: SafetyEvidence) -> frozenset[str]:
    """Triggers of one frame that a second, independent witness backs at once: ``tamper`` on a
    frame the change gate itself read as the view being covered, moved or replaced.  A cut is an
    instant (one frame shows it), so k of n frames may never hold; with the gate's pixel
    comparison agreeing, one frame is enough for the monitor to alert.  The teacher is asked once
    the trigger persists (`persisting`): one frame of a cut is no sequence to judge."""
    return frozenset({"tamper"}) if evidence.gate_hint == "tamper" and "tamper" in evidence.triggers else frozenset()


def persisting(recent: Sequence[SafetyEvidence], rule: PersistenceRule) -> dict[str, float]:
    """Triggers in at least k of the last n frames (k per flag; calibrated frames weighed) → their count."""
    # The small tolerance keeps k whole frames at p exactly FULL_EVIDENCE_PROBABILITY persisting.
    return {t: c for t, c in sorted(evidence_counts(recent, rule).items()) if c >= rule.k_for(t) - 1e-9}
