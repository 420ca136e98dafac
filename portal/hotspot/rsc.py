"""Writing values into RouterOS scripts: every string quoted, comments that cannot end early.

RouterOS strings are delimited only by double quotes. Inside them ``"``, ``\\`` and ``$`` (which
would start a variable) are escaped with a backslash, and control and non-ASCII bytes become
``\\XX`` (reference/routeros-reach.md §1). ``?`` is written ``\\?`` for RouterOS 6 (as its exports
do) and bare for 7 (the v7 manual removed the escape). A comment runs to the end of the line, so
only a newline could break out of one: ``comment_text`` keeps comments to plain printable ASCII.
"""

from __future__ import annotations

import re

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Anything outside printable ASCII, and "?" (a RouterOS 6 terminal answers it with help, even mid-line).
_PLAIN_COMMENT = re.compile(r"[^ ->@-~]")


def ros_str(value: str, *, ros6: bool = False) -> str:
    """``value`` as a RouterOS string literal, quotes included; safe for any input."""
    out = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        if char in '"\\$':
            out.append("\\" + char)
        elif char == "?":
            out.append("\\?" if ros6 else "?")
        elif char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        elif byte < 0x20 or byte > 0x7E:
            out.append(f"\\{byte:02X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def comment_text(value: str, limit: int = 80) -> str:
    """Free text made safe for a ``#`` comment line: printable ASCII only, one line, bounded."""
    return _PLAIN_COMMENT.sub("_", value)[:limit]
