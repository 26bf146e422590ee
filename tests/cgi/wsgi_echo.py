#!/usr/bin/env python3
"""A WSGI app served through CGI: echoes what it was given, for lsbaws's tests."""
import hashlib
import os
import wsgiref.handlers


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    lines = [
        "method=" + environ["REQUEST_METHOD"],
        "path=" + environ.get("PATH_INFO", ""),
        "query=" + environ.get("QUERY_STRING", ""),
        "x-test=" + environ.get("HTTP_X_TEST", ""),
        "proxy=" + os.environ.get("HTTP_PROXY", "<unset>"),
        "body-len=%d" % len(body),
        "body-sha256=" + hashlib.sha256(body).hexdigest(),
    ]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("\n".join(lines) + "\n").encode()]


if __name__ == "__main__":
    wsgiref.handlers.CGIHandler().run(app)
