"""The one configuration model, one section per module (`pipeline.config.<section>`).

Loaded from YAML, validated by pydantic: unknown keys and out-of-range values are errors
that name the key and the allowed range.  Every default equals the documented value
(docs/CONFIG.md), and ``config.example.yaml`` lists the essentials.  The package re-exports
the root names only; a section's model is imported from its own module.
"""

from pipeline.config.loading import load_settings, settings_from_dict
from pipeline.config.settings import Settings

__all__ = ["Settings", "load_settings", "settings_from_dict"]
