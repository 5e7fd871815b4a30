"""What keeps the review page safe: loopback unless a token is set, the token compared in constant
time, CSRF tokens on every state-changing POST, and files served only from inside the run folder."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path

from pipeline.errors import UsageError

CSRF_COOKIE = "edgewatch_csrf"
CSRF_FIELD = "csrf"
TOKEN_COOKIE = "edgewatch_token"
#: Only images are ever served from the run folder.
SERVED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token (one clear line)."""
    if not is_loopback(host) and not token:
        raise UsageError(f"refusing to serve the review page on {host} without a token: "
                         "set web.token in the config or EDGEWATCH_WEB__TOKEN (loopback needs none)")


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(cookie: str | None, submitted: str | None) -> bool:
    """Double-submit check: the form's token must equal the (SameSite=Strict) cookie's."""
    return bool(cookie) and bool(submitted) and hmac.compare_digest(str(cookie).encode(), str(submitted).encode())


def safe_file(root: Path, relative: str) -> Path | None:
    """``root/relative`` when it resolves to an image file inside ``root`` (no traversal, no symlink out)."""
    if "\x00" in relative or relative.startswith(("/", "\\")):
        return None
    base = root.resolve()
    try:
        candidate = (base / relative).resolve()
    except (OSError, RuntimeError):
        return None
    if not candidate.is_relative_to(base) or candidate.suffix.lower() not in SERVED_SUFFIXES or not candidate.is_file():
        return None
    return candidate


def url_path_in(root: Path, path: str | None) -> str | None:
    """The path of a file below ``root`` relative to it (for a /files/ URL), or None when it lies outside."""
    if not path:
        return None
    try:
        candidate = Path(path).resolve()
        return candidate.relative_to(root.resolve()).as_posix() if candidate.is_file() else None
    except (OSError, ValueError):
        return None
