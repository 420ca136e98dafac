"""Data sizes as owners type them: "500MB", "500M", "2GB", "2G", "1.5G", "10k" or plain bytes.

RouterOS takes k, M and G without the B, so owners type both. Units are binary (1k = 1024 bytes),
as RouterOS counts them. Shared by the plan form and the CLI (``plan add --data-limit``).
"""

from __future__ import annotations

import re

EXAMPLES = "500MB, 500M, 2GB, 2G or a number of bytes"
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmg])(?:i?b)?|b)?")
_SCALE = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class BadSize(ValueError):
    """The text is not a data size; the message says what is accepted."""


def parse_bytes(text: str) -> int:
    """'500MB', '500M', '1.5G', '10k' or plain bytes → bytes. Raises BadSize."""
    match = _SIZE.fullmatch(text.strip().lower())
    if not match:
        raise BadSize(f"use forms like {EXAMPLES}")
    return int(float(match.group(1)) * _SCALE[match.group(2)])
