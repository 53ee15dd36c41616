"""No secret in a log line: every URL a log record holds is redacted on its way out.

Code redacts the URLs it logs itself (syntax.redact_url); this filter on the process's log
handlers is the net under that, for URLs inside exception texts and third-party messages.
Userinfo passwords and every query value become `***`; for schemes other than http(s)
(apprise's `slack://TokenA/TokenB/...`, `json://host/SECRETPATH`) everything after the
scheme is hidden, as the docs promise for notification URLs. httpx, httpcore and apprise log whole request
URLs, so their loggers stay at WARNING whatever --log-level says.
"""

from __future__ import annotations

import logging
import re

from .syntax import redact_url

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,30}://[^\s'\"<>`]+")
QUIET = ("httpx", "httpcore", "apprise", "hpack")
WEB_SCHEMES = ("http", "https", "prometheus+http", "prometheus+https", "ws", "wss")


def redact_text(text: str) -> str:
    if "://" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        url = m.group(0)
        scheme = url.split("://", 1)[0].lower()
        if scheme not in WEB_SCHEMES:
            return f"{scheme}://***"  # apprise URLs: the "host" is often a token too (slack://TokenA/...)
        return redact_url(url)

    return _URL.sub(one, text)


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string is the logging module's to report
            return True
        red = redact_text(msg)
        if red != msg:
            record.msg, record.args = red, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install(root: logging.Logger | None = None) -> None:
    """Filter every handler of the root logger, and keep URL-logging libraries at WARNING."""
    root = root or logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
