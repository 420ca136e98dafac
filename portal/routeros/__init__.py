"""RouterOS API client: the only code in the portal that imports librouteros."""

from .connection import RouterConnection, RouterCredentials, RouterPool
from .errors import RouterCommandFailed, RouterError, RouterLoginFailed, RouterUnreachable

__all__ = [
    "RouterCommandFailed",
    "RouterConnection",
    "RouterCredentials",
    "RouterError",
    "RouterLoginFailed",
    "RouterPool",
    "RouterUnreachable",
]
