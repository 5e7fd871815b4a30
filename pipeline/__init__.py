"""edgewatch: watch video, gate frames, ask a small vision model, escalate sequences to a large one, alert.

Data flows capture → gate → encode → student → window → states → escalation → teacher queue →
teacher → events/sinks.  `pipeline.runner` is the one module that wires these stages.
"""

__version__ = "0.1.0"
