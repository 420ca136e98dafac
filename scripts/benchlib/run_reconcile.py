"""Run the reconciliation job's service back to back (as coalesced scheduler runs would) until no
stuck initiation is left or the deadline passes; print the counts as JSON. Started by scripts/bench."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    from portal import create_app
    from portal.core.extensions import db
    from portal.jobs import record_run
    from portal.money.reconciliation import reconcile_stuck_initiations

    app = create_app()
    totals = {"runs": 0, "queried": 0, "pending": 0, "settled": 0, "errors": 0}
    while time.monotonic() < deadline:
        with app.app_context():
            try:
                counts = record_run("reconcile_initiations", reconcile_stuck_initiations) or {}
            finally:
                db.session.remove()
        totals["runs"] += 1
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        if not counts.get("queried"):
            break
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
