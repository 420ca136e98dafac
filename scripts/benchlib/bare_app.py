"""The bare Flask JSON endpoint the callback throughput is compared with (same gunicorn settings)."""

from __future__ import annotations

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/hooks/<token>/stk")
def stk(token: str):  # type: ignore[no-untyped-def]
    request.get_data(cache=False)
    return jsonify({"ResultCode": 0, "ResultDesc": "Accepted"})


@app.get("/")
def index():  # type: ignore[no-untyped-def]
    return jsonify({"ok": True})
