"""The owner's look on the customer pages: hotspot name, a small logo, an accent colour, a support
phone and a terms link, set for the owner and optionally overridden per router.

The captive pages read ``brand_for(router_id)``, a snapshot cached for a few seconds like the
storefront (every customer who joins the Wi-Fi reads it). The logo is capped at LOGO_MAX_BYTES and
checked to be a raster image by its first bytes: it is served from our host to phones that have
no internet yet, and must keep the heaviest customer page under 12 KB.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa

from ..core.cache import LockedTTLCache
from ..core.extensions import db
from ..models import Brand, Router, User

LOGO_MAX_BYTES = 2 * 1024  # plans page + css + js + icon + logo stay under the 12 KB bar, with room to grow
BRAND_TTL_S = 5.0
_ACCENT = re.compile(r"\A#[0-9a-fA-F]{6}\Z")
_PHONE = re.compile(r"\A\+?[0-9][0-9 ]{5,18}\Z")
# (first bytes, media type): raster formats only. SVG is refused: it can carry script.
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class BrandError(ValueError):
    """A brand field the owner must fix; ``field`` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class BrandView:
    """What the customer pages show; plain values safe to share between requests."""

    hotspot_name: str | None = None
    accent: str | None = None
    support_phone: str | None = None
    terms_url: str | None = None
    logo_id: int | None = None  # Brand row holding the logo
    logo_hash: str | None = None

    @property
    def is_plain(self) -> bool:
        return self == NO_BRAND


NO_BRAND = BrandView()
_brands: LockedTTLCache[BrandView] = LockedTTLCache(BRAND_TTL_S)


def brand_for(router_id: int | None) -> BrandView:
    """The router's brand over its owner's, field by field; cached for BRAND_TTL_S in this process."""
    if router_id is None:
        return NO_BRAND
    return _brands.get(str(router_id), lambda: _load(router_id))


def _load(router_id: int) -> BrandView:
    owner_id = db.session.scalar(sa.select(Router.owner_id).where(Router.id == router_id))
    if owner_id is None:
        return NO_BRAND
    rows = db.session.scalars(
        sa.select(Brand).where(
            Brand.owner_id == owner_id, sa.or_(Brand.router_id == router_id, Brand.router_id.is_(None))
        )
    ).all()
    owner_row = next((b for b in rows if b.router_id is None), None)
    router_row = next((b for b in rows if b.router_id == router_id), None)

    def pick(field: str) -> str | None:
        for row in (router_row, owner_row):
            if row is not None and getattr(row, field):
                return getattr(row, field)
        return None

    logo_row = next((row for row in (router_row, owner_row) if row is not None and row.logo_bytes), None)
    return BrandView(
        hotspot_name=pick("hotspot_name"),
        accent=pick("accent"),
        support_phone=pick("support_phone"),
        terms_url=pick("terms_url"),
        logo_id=logo_row.id if logo_row else None,
        logo_hash=logo_row.logo_hash if logo_row else None,
    )


def logo(brand_id: int) -> tuple[bytes, str] | None:
    row = db.session.get(Brand, brand_id)
    if row is None or not row.logo_bytes or not row.logo_type:
        return None
    return row.logo_bytes, row.logo_type


def brand_row(owner: User, router: Router | None = None) -> Brand | None:
    query = sa.select(Brand).where(Brand.owner_id == owner.id)
    query = query.where(Brand.router_id == router.id) if router else query.where(Brand.router_id.is_(None))
    return db.session.scalars(query).first()


def save_brand(
    owner: User,
    router: Router | None,
    *,
    hotspot_name: str = "",
    accent: str = "",
    support_phone: str = "",
    terms_url: str = "",
    logo_bytes: bytes | None = None,
    remove_logo: bool = False,
) -> Brand:
    """Validate and store one brand (the owner's, or ``router``'s override); commits once.

    Empty fields mean "not set" (a router then shows the owner's). ``logo_bytes`` None keeps the
    current logo. Raises ``BrandError`` naming the first field to fix; nothing is stored then.
    """
    if router is not None and router.owner_id != owner.id:
        raise BrandError("router", "This router is not yours.")
    values = {
        "hotspot_name": _clean_name(hotspot_name),
        "accent": _clean_accent(accent),
        "support_phone": _clean_phone(support_phone),
        "terms_url": _clean_url(terms_url),
    }
    row = brand_row(owner, router) or Brand(owner_id=owner.id, router_id=router.id if router else None)
    for field, value in values.items():
        setattr(row, field, value)
    if remove_logo:
        row.logo_bytes = row.logo_type = row.logo_hash = None
    elif logo_bytes:
        row.logo_type = _logo_type(logo_bytes)
        row.logo_bytes = logo_bytes
        row.logo_hash = hashlib.sha256(logo_bytes).hexdigest()[:12]
    db.session.add(row)
    db.session.commit()
    forget_brands()
    return row


def forget_brands() -> None:
    _brands.clear()


def _clean_name(value: str) -> str | None:
    value = " ".join((value or "").split())
    if len(value) > 60:
        raise BrandError("hotspot_name", "The hotspot name can be at most 60 characters.")
    return value or None


def _clean_accent(value: str) -> str | None:
    value = (value or "").strip()
    if value and not _ACCENT.match(value):
        raise BrandError("accent", "The accent colour must look like #0a7d33.")
    return value.lower() or None


def _clean_phone(value: str) -> str | None:
    value = " ".join((value or "").split())
    if value and not _PHONE.match(value):
        raise BrandError("support_phone", "The support phone may hold only digits, spaces and a leading +.")
    return value or None


def _clean_url(value: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 300:
        raise BrandError("terms_url", "The terms link must be an http:// or https:// address (at most 300 characters).")
    return value


def _logo_type(data: bytes) -> str:
    if len(data) > LOGO_MAX_BYTES:
        raise BrandError(
            "logo", f"The logo is {len(data)} bytes; at most {LOGO_MAX_BYTES} keep the pages fast on 2G."
        )
    kind = next((media for magic, media in _IMAGE_MAGIC if data.startswith(magic)), None)
    if kind is None:
        raise BrandError("logo", "The logo must be a PNG, JPEG or GIF image.")
    return kind
