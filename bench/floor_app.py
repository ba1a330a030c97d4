"""The floor: the least a correct webhook receiver must do, in bare Flask.

It reads the raw body, checks the hex HMAC-SHA256 in
``X-Integration-Signature`` in constant time, parses the JSON and
answers 202. No store, no limiter, no dispatch, no logging: whatever the
gateway costs above this is the price of its guarantees. Served by
gunicorn with the gateway's own ``gunicorn.conf.py``::

    BENCH_SECRET=... gunicorn bench.floor_app:app -c gunicorn.conf.py
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from flask import Flask, Response, jsonify, request

SIGNATURE_HEADER = "X-Integration-Signature"

app = Flask("floor")
_secret = os.environ.get("BENCH_SECRET", "").encode()


@app.post("/api/webhooks/<source>")
def receive(source: str) -> tuple[Response, int]:
    """Verify, parse and acknowledge one delivery."""
    body = request.get_data()
    expected = hmac.new(_secret, body, hashlib.sha256).hexdigest()
    given = request.headers.get(SIGNATURE_HEADER, "").lower()
    if not hmac.compare_digest(expected, given.encode("ascii", "replace").decode()):
        return jsonify({"error": "bad signature", "code": "invalid_signature"}), 401
    try:
        payload = json.loads(body)
    except ValueError:
        return jsonify({"error": "bad JSON", "code": "invalid_payload"}), 400
    if not isinstance(payload, dict):
        return jsonify({"error": "not an object", "code": "invalid_payload"}), 400
    return jsonify({"received": True, "id": payload.get("id"), "duplicate": False}), 202


@app.get("/healthz")
def healthz() -> Response:
    """Answer while the process is alive."""
    return jsonify({"status": "ok"})
