"""What can go wrong with a model call: the failure kinds and the one-line `ModelError` every backend raises.

A failure is classified once (`pipeline.analyzers.ollama_transport.classify` turns whatever the
client library raised into a `ModelError`); callers decide on the kind: retry, fall back, or report.
"""

from __future__ import annotations

from enum import Enum

from pipeline.errors import EdgewatchError
from pipeline.masking import mask_url


class FailureKind(str, Enum):
    CONNECTION_REFUSED = "connection_refused"
    DNS = "dns"
    TIMEOUT = "timeout"
    MODEL_NOT_FOUND = "model_not_found"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    STREAM_CUT = "stream_cut"
    MALFORMED = "malformed"
    BAD_REQUEST = "bad_request"


#: Kinds worth one more try: the next answer may well be fine.
_RETRYABLE = frozenset({FailureKind.OVERLOADED, FailureKind.SERVER_ERROR, FailureKind.STREAM_CUT, FailureKind.MALFORMED})


class ModelError(EdgewatchError):
    """A classified model-call failure; ``str()`` is one line: ``<kind>: <what happened and what to do>``."""

    def __init__(self, kind: FailureKind, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


def mask_host(host: str) -> str:
    """``http://user:secret@host/?token=x`` → ``http://user:***@host/?token=***`` (`pipeline.masking`)."""
    return mask_url(host.strip())
