"""app.py - a small WSGI app for the service test: every request runs
handle_request(), whose CPU work dominates the worker's time."""
import hashlib
import json


def handle_request(n):
    total = 0
    for i in range(n):
        total += sum(j * j for j in range(50))
    return json.dumps({"total": total, "digest": hashlib.sha256(str(total).encode()).hexdigest()})


def application(environ, start_response):
    # ~6 ms of CPU a request: well above gunicorn's own per-request work
    # (accept, parse, respond: ~1 ms), also when slow stops (a sanitizer
    # build of the attacher) cost the worker cold caches; at 400 the
    # handler's share fell to 0.49 once under load.
    body = handle_request(1200).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
