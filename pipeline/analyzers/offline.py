"""The embedded offline analyzers: an OpenCV student and teacher that need no model server.

They are the default backends when no Ollama host answers, so the main command works on a
fresh machine.  They are honest computer vision, nothing else, and precision first: the
student (`offline_student`) claims a safety flag only on evidence it can see — flames that
flicker in place (`offline_fire`), a tracked person's silhouette that drops and stays low
(`offline_tracking`), a covered or replaced view — and otherwise reports activity.  The
teacher (`offline_teacher`) reviews a whole keyframe sequence with different evidence (dense
optical flow, silhouettes against the sequence's own references, whole-frame person
detection, `offline_sequence`) and says ``unverified`` when it cannot tell.
docs/OFFLINE.md says what they cannot see.
"""

from pipeline.analyzers.offline_student import OfflineStudent
from pipeline.analyzers.offline_teacher import OfflineTeacher
from pipeline.analyzers.offline_zones import ZoneBook

__all__ = ["OfflineStudent", "OfflineTeacher", "ZoneBook"]
