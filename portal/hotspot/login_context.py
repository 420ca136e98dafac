"""What the router's hotspot login page hands the portal about the customer's device."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class HotspotContext:
    """What the router's login page handed over; kept with the purchase to log the browser in later."""

    mac: str | None = None
    ip: str | None = None
    link_login_only: str | None = None
    link_orig: str | None = None
    chap_id: str | None = None
    chap_challenge: str | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in self.__dict__.items() if v})

    @classmethod
    def from_json(cls, raw: str | None) -> HotspotContext:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

