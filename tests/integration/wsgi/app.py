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
    body = handle_request(400).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
