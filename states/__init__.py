"""Per-camera state machines (the only package that uses the ``transitions`` library)."""

from states.monitor import STATES, VERDICT_TIMEOUT_S, CameraMonitor
from states.monitor_records import MonitorOutput

__all__ = ["STATES", "VERDICT_TIMEOUT_S", "CameraMonitor", "MonitorOutput"]
