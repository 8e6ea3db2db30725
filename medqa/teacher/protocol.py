"""What the teacher's client, its setup and the offline judge server agree on: the default endpoint, the marks
of the offline judge, the check of a base URL and the one way a URL is shown. A leaf: it imports nothing from
the rest of the package."""

from __future__ import annotations

import re
from urllib.parse import urlparse, urlsplit, urlunsplit

DEFAULT_BASE_URL = "https://api.deepseek.com"
DEFAULT_MODEL = "deepseek-chat"
# The one environment variable a base URL is read from when no flag gives one: a URL that carries user:password
# goes here (or in a recipe file), never on a command line, where `ps` shows it to every user of the machine.
BASE_URL_ENV = "MEDQA_TEACHER_BASE_URL"
KEY_ENV_VARS = ("MEDQA_TEACHER_API_KEY", "DEEPSEEK_API_KEY")  # the API key, first one set wins

# The offline judge answers with this header and fingerprint, so a client knows it is not an LLM teacher.
OFFLINE_HEADER = "X-Medqa-Judge"
OFFLINE_FINGERPRINT = "medqa-offline-heuristic"
OFFLINE_BANNER = ("!!! OFFLINE JUDGE: scores come from a transparent heuristic rubric (medqa.safety + rules), "
                  "NOT from an LLM teacher. Cache rows are labelled '{model}'. !!!")


class TeacherSetupError(ValueError):
    """The teacher cannot be configured as asked (the message says what to change)."""


def has_credentials(url: str | None) -> bool:
    """`url` carries user:password (or a user) before its host."""
    if not url:
        return False
    try:
        u = urlsplit(url)
        return bool(u.username or u.password) or "@" in u.netloc
    except ValueError:
        return "@" in url


def check_base_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host, else TeacherSetupError (the URL shown by `public_url`)."""
    try:
        parsed = urlparse(url or "")
        ok = parsed.scheme in ("http", "https") and bool(parsed.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise TeacherSetupError(f"base URL {public_url(url or '')!r} is not an http(s) URL with a host "
                                f"(expected e.g. https://api.deepseek.com)")
    return url


def check_auth(url: str | None, has_key: bool) -> None:
    """One way to authenticate: an API key (sent as `Authorization: Bearer`) or user:password in the base URL
    (HTTP basic auth), never both — they would be two Authorization headers. TeacherSetupError otherwise."""
    if has_key and has_credentials(url):
        raise TeacherSetupError(
            f"the teacher base URL {public_url(url or '')} carries user:password and an API key is set "
            f"({' / '.join(KEY_ENV_VARS)}): use one of them — unset the key, or drop user:password "
            f"from the URL")


_USERINFO = re.compile(r"(^|//)[^/?#\s]*@")


def public_url(url: str) -> str:
    """`url` as it may be printed, logged or recorded: without user:password, query or fragment — also when it is
    not a valid URL (a mistyped scheme, a missing `//`): every message that shows a URL goes through here."""
    text = str(url)
    try:
        u = urlsplit(text)
        port: int | None
        try:
            port = u.port
        except ValueError:
            port = None
        if u.netloc:
            host = (u.hostname or "") + (f":{port}" if port else "")
            text = urlunsplit((u.scheme, host, u.path, "", ""))
        else:
            text = urlunsplit((u.scheme, "", u.path, "", "")) if u.scheme else text.split("?", 1)[0].split("#", 1)[0]
    except ValueError:
        text = text.split("?", 1)[0].split("#", 1)[0]
    # Whatever the parser made of it, nothing that looks like user:password@ before a host survives.
    return _USERINFO.sub(lambda m: m.group(1) + "***@", text)
