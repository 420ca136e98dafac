"""Routers in the database ↔ connections in the routeros package."""

from __future__ import annotations

import re
import secrets

import sqlalchemy as sa
from flask import current_app

from .extensions import db
from .models import Router, User
from .routeros.connection import RouterConnection, RouterCredentials, RouterPool


def router_pool() -> RouterPool:
    """One pool per app (and so per process): one reused, locked connection per router."""
    pool = current_app.extensions.get("portal_router_pool")
    if pool is None:
        cfg = current_app.config
        pool = RouterPool(
            connect_timeout=cfg["PORTAL_ROUTER_CONNECT_TIMEOUT_S"],
            command_timeout=cfg["PORTAL_ROUTER_COMMAND_TIMEOUT_S"],
        )
        current_app.extensions["portal_router_pool"] = pool
    return pool


def credentials_for(router: Router) -> RouterCredentials:
    return RouterCredentials(
        host=router.host,
        port=router.port,
        username=router.api_username,
        password=router.api_password,
        use_tls=router.use_tls,
        label=router.slug,
    )


def connection_for(router: Router) -> RouterConnection:
    return router_pool().get(router.id, credentials_for(router))


def new_router_slug(name: str) -> str:
    """Readable and unique: 'Mama Njeri Cafe' → 'mama-njeri-cafe-4k2'."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "router"
    while True:
        slug = f"{base}-{secrets.token_hex(2)}"
        if not db.session.scalar(sa.select(Router.id).where(Router.slug == slug)):
            return slug


def create_router(
    *,
    owner: User,
    name: str,
    host: str,
    port: int,
    username: str,
    password: str,
    use_tls: bool = False,
    hotspot_server: str | None = None,
    slug: str | None = None,
) -> Router:
    """Add a router with its API password encrypted; the caller commits."""
    router = Router(
        owner_id=owner.id,
        name=name,
        slug=slug or new_router_slug(name),
        host=host,
        port=port,
        use_tls=use_tls,
        api_username=username,
        hotspot_server=hotspot_server,
    )
    router.api_password = password
    db.session.add(router)
    return router
