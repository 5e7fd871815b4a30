"""The review page: a run's events, their evidence and one-click feedback in a browser (docs/REVIEW.md).

Starlette, Jinja2 and uvicorn live behind this package (the `web` extra); htmx is served from
``static/``, never from a CDN.  One module per page: `events_page`, `event_page`,
`cameras_page`, `feedback`; `app` puts them together, `server` runs them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError

#: The modules the review page needs (the `web` extra).
WEB_STACK = ("starlette", "jinja2", "uvicorn", "python_multipart")


def require_web_stack() -> None:
    """One clear line when the web extra is not installed."""
    missing = [name for name in WEB_STACK if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"the review page needs {', '.join(missing)}: pip install 'edgewatch[web]'")


def start_review_server(settings: Any, out_dir: Path, **live: Any) -> Any:
    """The review page inside a run (``web.enabled``) on a background thread; see `pipeline.web.server`."""
    require_web_stack()
    from pipeline.web.server import start_review_server as start

    return start(settings, out_dir, **live)
