"""What each SMS says. A customer's receipt is in the language of the page they bought on and
always fits one GSM-7 part: names are made GSM-7 and shortened until it does.

The words live here rather than in the page catalogs: a receipt is written by the worker, long
after the request, in the language recorded with the purchase (``vouchers.language``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from . import gsm7

NAIROBI = timezone(timedelta(hours=3), "EAT")
MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "sw": ("Jan", "Feb", "Mac", "Apr", "Mei", "Jun", "Jul", "Ago", "Sep", "Okt", "Nov", "Des"),
}
NAME = {"en": "{name} ", "sw": " ya {name}"}  # where the hotspot's name goes, when it has one
RECEIPT = {
    "en": "{name}WiFi code: {code}. {plan}, {ends}. To reconnect, join the WiFi and enter this code on the login page.",
    "sw": "Nambari ya WiFi{name}: {code}. {plan}, {ends}. Kuunganisha tena: jiunge na WiFi, weka nambari hii ukurasa wa kuingia.",
}
ENDS = {"en": "valid until {when}", "sw": "inaisha {when}"}
USE_FOR = {"en": "{duration} of use", "sw": "{duration} za matumizi"}
DATA = {"en": "{amount} data", "sw": "data {amount}"}
DEVICES = {"en": "{n} devices", "sw": "vifaa {n}"}
UNITS = {
    "en": ((86400, "day", "days"), (3600, "hour", "hours"), (60, "minute", "minutes")),
    "sw": ((86400, "siku", "siku"), (3600, "saa", "saa"), (60, "dakika", "dakika")),
}
MIN_PLAN_CHARS = 6  # a plan name is cut no shorter than this; the hotspot's name goes first


@dataclass(frozen=True)
class ReceiptFacts:
    code: str
    plan_name: str
    hotspot_name: str | None
    language: str
    expires_at: datetime | None  # wall-clock plans: when it ends
    duration_s: int
    data_limit_bytes: int | None
    devices: int = 1


def receipt_text(facts: ReceiptFacts) -> str:
    """The customer's receipt: code, plan, when it ends (or its limits), how to reconnect. One part."""
    lang = facts.language if facts.language in RECEIPT else "en"
    limits = [_ends(facts, lang)]
    if facts.data_limit_bytes:
        limits.append(DATA[lang].format(amount=describe_bytes(facts.data_limit_bytes)))
    if facts.devices > 1:
        limits.append(DEVICES[lang].format(n=facts.devices))
    ends = ", ".join(limits)
    name = gsm7.to_gsm7(facts.hotspot_name or "").strip()
    plan = gsm7.to_gsm7(facts.plan_name).strip() or "WiFi"

    def build(name: str, plan: str) -> str:
        shown = NAME[lang].format(name=name) if name else ""
        return RECEIPT[lang].format(name=shown, code=facts.code, plan=plan, ends=ends)

    text = build(name, plan)
    while gsm7.septets(text) > gsm7.ONE_PART and name:
        name = name[:-1].rstrip() if len(name) > 1 else ""
        text = build(name, plan)
    for shortest in (MIN_PLAN_CHARS, 1):  # the last resort (long limits in Swahili): a plan's initial
        while gsm7.septets(text) > gsm7.ONE_PART and len(plan) > shortest:
            plan = plan[:-1].rstrip()
            text = build(name, plan)
    return text


def _ends(facts: ReceiptFacts, lang: str) -> str:
    if facts.expires_at is not None:
        local = facts.expires_at.astimezone(NAIROBI)
        when = f"{local:%H:%M} {local.day} {MONTHS[lang][local.month - 1]}"
        return ENDS[lang].format(when=when)
    return USE_FOR[lang].format(duration=describe_duration(facts.duration_s, lang))


def describe_duration(seconds: int, lang: str) -> str:
    for size, one, many in UNITS[lang]:
        if seconds >= size and seconds % size == 0 or size == 60:
            n = max(1, round(seconds / size))
            if lang == "sw":
                return f"{one if n == 1 else many} {n}"
            return f"{n} {one if n == 1 else many}"
    return str(seconds)


def describe_bytes(count: int) -> str:
    if count >= 1024**3 and count % (1024**3) == 0:
        return f"{count // 1024**3}GB"
    return f"{max(1, round(count / 1024**2))}MB"


# --- owner alerts (English: the dashboard speaks English) ------------------------------------------

ALERT_PREFIX = "WiFi portal alert: "
ALL_CLEAR_PREFIX = "WiFi portal all clear: "


def alert_text(detail: str) -> str:
    return _one_part(ALERT_PREFIX, detail)


def all_clear_text(detail: str) -> str:
    return _one_part(ALL_CLEAR_PREFIX, detail)


def _one_part(prefix: str, detail: str) -> str:
    text = prefix + gsm7.to_gsm7(detail)
    while gsm7.septets(text) > gsm7.ONE_PART:
        text = text[:-4].rstrip() + "..."
    return text
