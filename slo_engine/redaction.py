"""The one place that decides what of a URL may be shown: every log line, message and command
output that names a URL passes it (or the whole text) through `redact`.

It sits outside the import layers, like `errors` and `extras`, so the CLI, the service, the
Prometheus client and the notifier all use the same function. A URL carries secrets in two
places: `user:password@` before the host, and query parameters such as `?token=`. Both are
masked; the scheme, host, port and path stay, as a reader needs them to tell which server
failed.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact"]

MASK = "***"

# `scheme://userinfo@`: userinfo is anything up to the last '@' before the path, so a
# password holding '@' or ':' is masked whole.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s\"'<>]*@)")
# `?token=...` or `&password=...` in a query string.
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9_.-]*[_.-])?(?:token|password|passwd|pass|secret|api[_-]?key"
    r"|apikey|key|signature|sig|auth|credentials?)=)(?P<value>[^&;#\s\"'<>]*)",
    re.IGNORECASE)


def redact(text: str) -> str:
    """`text` (a URL, or a message or log line holding URLs) with every credential in a URL
    masked: `http://user:pass@host:9090/?token=x` → `http://***@host:9090/?token=***`."""
    if "://" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _SECRET_PARAMETER.sub(lambda m: f"{m['name']}{MASK}" if m["value"] else m[0], text)
