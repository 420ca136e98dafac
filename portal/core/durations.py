"""Durations as people type and read them: "3h", "3 hours", "90 min", "1 day", "1h30m", "2 weeks".

Shared by the plan form and the CLI (``plan add --duration``); catalogue.describe_duration reads them back.
"""

from __future__ import annotations

import re

# Every spelling of each unit an owner is likely to type, singular and plural.
_UNITS: dict[str, int] = {}
for _seconds, _names in (
    (604800, ("w", "wk", "wks", "week", "weeks")),
    (86400, ("d", "day", "days")),
    (3600, ("h", "hr", "hrs", "hour", "hours")),
    (60, ("m", "min", "mins", "minute", "minutes")),
    (1, ("s", "sec", "secs", "second", "seconds")),
):
    _UNITS.update(dict.fromkeys(_names, _seconds))

_PART = re.compile(r"(\d+(?:[.,]\d+)?)\s*([a-z]+)")


class BadDuration(ValueError):
    """The text is not a duration; the message says what is accepted."""


EXAMPLES = "3h, 3 hours, 90 min, 1 day, 1h30m or 2 weeks"


def parse_duration(text: str) -> int:
    """Seconds in ``text``: one or more number-unit pairs ("1 day 12 hours"), or plain seconds.

    Raises ``BadDuration`` for anything else, including a unit it does not know ("3 moons").
    """
    cleaned = text.strip().lower().replace(" and ", " ")
    if cleaned.isdigit():
        return int(cleaned)
    parts = _PART.findall(cleaned)
    leftover = _PART.sub("", cleaned).replace(",", "").strip()
    if not parts or leftover:
        raise BadDuration(f"Use forms like {EXAMPLES}.")
    total = 0.0
    for number, unit in parts:
        if unit not in _UNITS:
            raise BadDuration(f"'{unit}' is not a unit of time; use forms like {EXAMPLES}.")
        total += float(number.replace(",", ".")) * _UNITS[unit]
    return round(total)
