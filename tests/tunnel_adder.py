"""`python -m tests.tunnel_adder DATABASE_URL OWNER_ID COUNT GO_FILE`: one process adding tunnel
routers, each in its own transaction, as fast as it can once GO_FILE exists (so two start together)."""

from __future__ import annotations

import os
import sys
import time

from portal import create_app
from portal.core.extensions import db
from portal.hotspot.routers import create_router
from portal.models import User
from tests.conftest import TEST_FERNET_KEY


def main(url: str, owner_id: int, count: int, go_file: str) -> int:
    app = create_app({
        "TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "x", "PORTAL_ENCRYPTION_KEYS": TEST_FERNET_KEY,
        "PORTAL_SCHEDULER": "off", "PORTAL_TUNNEL_ENDPOINT": "hub.example.net:51820",
        "PORTAL_TUNNEL_NETWORK": "10.77.0.0/24",
    })
    with app.app_context():
        owner = db.session.get(User, owner_id)
        while not os.path.exists(go_file):
            time.sleep(0.005)
        for i in range(count):
            create_router(owner=owner, name=f"p{os.getpid()}-{i}", host="", port=8728, username="u",
                          password="p", tunnel=True)
            db.session.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
