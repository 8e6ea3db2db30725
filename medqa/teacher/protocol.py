"""What the teacher's client, its setup and the offline judge server agree on: the default endpoint, the marks
of the offline judge, and the check of a base URL. A leaf: it imports nothing from the rest of the package."""

from __future__ import annotations

from urllib.parse import urlparse, urlsplit, urlunsplit

DEFAULT_BASE_URL = "https://api.deepseek.com"
DEFAULT_MODEL = "deepseek-chat"

# The offline judge answers with this header and fingerprint, so a client knows it is not an LLM teacher.
OFFLINE_HEADER = "X-Medqa-Judge"
OFFLINE_FINGERPRINT = "medqa-offline-heuristic"
OFFLINE_BANNER = ("!!! OFFLINE JUDGE: scores come from a transparent heuristic rubric (medqa.safety + rules), "
                  "NOT from an LLM teacher. Cache rows are labelled '{model}'. !!!")


class TeacherSetupError(ValueError):
    """The teacher cannot be configured as asked (the message says what to change)."""


def check_base_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host, else TeacherSetupError."""
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise TeacherSetupError(f"base URL {url!r} is not an http(s) URL (expected e.g. https://api.deepseek.com)")
    return url


def public_url(url: str) -> str:
    """`url` as it may be printed, logged or recorded: without user:password, query or fragment."""
    u = urlsplit(url)
    try:
        port = u.port
    except ValueError:
        port = None
    host = (u.hostname or "") + (f":{port}" if port else "")
    return urlunsplit((u.scheme, host, u.path, "", "")) if u.scheme or u.netloc else url
