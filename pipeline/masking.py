"""Hiding secrets in URLs before any text leaves the program (errors, logs, decision log, summary).

URLs are parsed, not pattern-matched: the userinfo is everything between ``scheme://`` and the
last ``@`` before the host, so a password with an unencoded ``/``, ``#``, ``@`` or ``%`` is hidden
whole; query parameters whose names look like secrets (token, key, password, signature, ...) keep
their name and lose their value.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_SCHEME = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)")
_SECRET_NAME = re.compile(r"pass|pwd|token|secret|key|auth|sig|credential|session", re.IGNORECASE)
_HOST = re.compile(r"^\[?[A-Za-z0-9._\-:\]]+(?:[/?#]|$)")
MASK = "***"


def _split(url: str) -> tuple[str, str | None, str] | None:
    """(scheme://, userinfo or None, the rest after the userinfo's ``@``), or None when not a URL."""
    m = _SCHEME.match(url)
    if m is None:
        return None
    rest = url[m.end():]
    # The host follows the last '@' that is followed by something shaped like a host.
    for at in [i for i, c in enumerate(rest) if c == "@"][::-1]:
        if _HOST.match(rest[at + 1:]):
            return m.group("scheme"), rest[:at], rest[at + 1:]
    return m.group("scheme"), None, rest


def _mask_query(rest: str) -> str:
    path, sep, query = rest.partition("?")
    if not sep:
        return rest
    query, hash_sep, fragment = query.partition("#")
    params = []
    for param in re.split(r"([&;])", query):
        name, eq, _value = param.partition("=")
        params.append(f"{name}={MASK}" if eq and _SECRET_NAME.search(name) else param)
    return f"{path}?{''.join(params)}{hash_sep}{fragment}"


def mask_url(url: str) -> str:
    """``rtsp://user:***@host/s?token=***``; a bare userinfo (``rtsp://token@host``) is hidden whole."""
    parts = _split(url.strip())
    if parts is None:
        return url
    scheme, userinfo, rest = parts
    shown = ""
    if userinfo is not None:
        user, sep, _password = userinfo.partition(":")
        shown = f"{user}:{MASK}@" if sep else f"{MASK}@"
    return scheme + shown + _mask_query(rest)


def url_secrets(url: str) -> list[str]:
    """The secrets in a URL (password or bare token, secret query values), raw and percent-decoded,
    to scrub from texts that may quote the URL in pieces (an FFmpeg error message)."""
    parts = _split(url.strip())
    if parts is None:
        return []
    _scheme, userinfo, rest = parts
    found: list[str] = []
    if userinfo is not None:
        user, sep, password = userinfo.partition(":")
        found.append(password if sep else user)
    _path, _q, query = rest.partition("?")
    for param in re.split(r"[&;]", query.partition("#")[0]):
        name, eq, value = param.partition("=")
        if eq and _SECRET_NAME.search(name):
            found.append(value)
    found += [unquote(s) for s in found if unquote(s) != s]
    return [s for s in found if len(s) >= 3]  # masking "a" everywhere would mangle text, not protect it
