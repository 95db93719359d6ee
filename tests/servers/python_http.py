"""Python's stdlib http.server under up-run --exec: the listener from socket
activation (fd 3), READY=1 on $NOTIFY_SOCKET, a graceful stop on SIGTERM:
stop accepting, let each connection's thread finish its request (an idle
keep-alive one ends after `timeout`), then exit.

SIGTERM is taken with sigwait() in the main thread, not by a handler: a
Python handler runs in the main thread between any two bytecodes, also
inside threading's own locks while serve_forever() starts a connection's
thread, and a handler that starts a thread (shutdown() must not run in the
thread of serve_forever()) then waits for that lock forever. That server
neither answers the connection it was starting nor exits."""
import http.server, os, signal, socket, threading

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = 2  # an idle keep-alive connection is closed after 2 s

    def do_GET(self):
        body = b"Hello World"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Up-Pid", str(os.getpid()))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

# Blocked before any thread starts, so in every thread: it waits for sigwait().
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
server = http.server.ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
server.daemon_threads = False  # server_close() waits for them
server.socket = socket.socket(fileno=3)  # LISTEN_FDS=1: the master's listener
serving = threading.Thread(target=server.serve_forever)
serving.start()
if os.environ.get("NOTIFY_SOCKET"):
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
signal.sigwait({signal.SIGTERM})
server.shutdown()  # serve_forever() returns: no more accepts
serving.join()
server.server_close()  # and each connection's thread ends
