"""A small WSGI app, for gunicorn under up-run --exec and for up_wsgi.py."""
import os


def app(environ, start_response):
    body = b"Hello World"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))),
                              ("X-Up-Pid", str(os.getpid()))])
    return [body]
