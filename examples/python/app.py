"""A WSGI app for up_wsgi.py: up-run --exec --protocol=handoff -- python3 up_wsgi.py app:app"""
import os


def app(environ, start_response):
    body = b"Hello World"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))),
                              ("X-Up-Pid", str(os.getpid())),
                              ("X-Up-Generation", os.environ.get("UP_GENERATION", "0"))])
    return [body]
