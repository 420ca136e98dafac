"""The bare Flask JSON endpoints the callback throughput and pull sync are compared with (same gunicorn settings)."""

from __future__ import annotations

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/hooks/<token>/stk")
def stk(token: str):  # type: ignore[no-untyped-def]
    request.get_data(cache=False)
    return jsonify({"ResultCode": 0, "ResultDesc": "Accepted"})


@app.post("/routers/<slug>/sync")
def sync(slug: str):  # type: ignore[no-untyped-def]
    """What a pull sync with nothing to do costs a Flask app that reads the JSON and answers it."""
    request.get_json(force=True, silent=True)
    return jsonify({"interval": 15, "profiles": [], "add": [], "remove": []})


@app.get("/")
def index():  # type: ignore[no-untyped-def]
    return jsonify({"ok": True})
