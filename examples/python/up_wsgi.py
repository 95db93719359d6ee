#!/usr/bin/env python3
"""up_wsgi: a WSGI server that is an up-run worker through the handoff
protocol (docs/PROTOCOL.md), in Python's standard library alone.

    up-run --exec --protocol=handoff -- python3 up_wsgi.py MODULE:APP

fd 3 is the channel to the master (SOCK_SEQPACKET). The master accepts,
checks each request head, and passes connections here one by one (CONN,
with the fd); this worker ACKs each before it touches it, serves HTTP/1.1
with keep-alive, and on DRAIN hands its idle connections back (CONN, with
the bytes it already read) instead of closing them: no client sees a
reload. One thread, one selector; blocking sends on the channel (they are
small, and the master always reads).
"""
import importlib
import io
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time

HDR = struct.Struct("=HBBIQQQII")  # magic, version, kind, payload_len, conn_id, arg, arg2, flags, 0
MAGIC, VERSION = 0x7570, 2
CONN, DRAIN, READY, FAIL, ACK, STATS, DECLINE, ROOM, DRAINING = range(1, 10)
F_MIGRATE_IDLE, F_SHED, F_STOP = 0x1, 0x2, 0x4
MAX_PAYLOAD = 65536
MAX_HEAD = 16384  # the master refuses a hand-back with more already read
OWN_DRAIN_S = 10.0  # a drain not asked by the master (SIGTERM, master gone)
LEAVE_WAIT_S = 2.0  # after DRAINING, how long to serve on waiting for the master's DRAIN
CLOSE_GRACE_S = 0.2  # idle connections to be closed first wait this long for a last request


class Conn:
    def __init__(self, sock, conn_id, prefix):
        self.sock = sock
        self.id = conn_id
        self.rbuf = bytearray(prefix)  # read, not yet consumed
        self.wbuf = bytearray()  # to send
        self.close_after = False  # close once wbuf is sent

    def idle(self):
        """Nothing to send, no whole request waiting, and nothing unread in
        the socket: may be handed back, or closed when the master stops. (A
        connection just passed to us has its request still in the socket:
        closed unread, the client would get a reset, not an answer.)"""
        if self.wbuf or b"\r\n\r\n" in self.rbuf or len(self.rbuf) > MAX_HEAD:
            return False
        try:
            return not self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return True


class Worker:
    def __init__(self, app):
        self.app = app
        self.chan = socket.socket(fileno=3)  # AF_UNIX, SOCK_SEQPACKET
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.chan, selectors.EVENT_READ, None)
        self.conns = {}  # fd -> Conn
        self.requests = 0
        self.draining = False
        self.leave_by = None  # DRAINING sent: drain on our own at this time, if no DRAIN came
        self.close_from = None  # draining: idle connections to be closed go from this time on
        self.deadline = None  # monotonic seconds
        self.migrate = False  # hand idle connections back at once
        self.stopping = False  # the master stops: close idle ones, hand nothing back
        self.master = True
        self.quit = False
        self.next_stats = 0.0

    # ---- the channel ----

    def send(self, kind, conn_id=0, arg=0, arg2=0, payload=b"", fd=None):
        if not self.master:
            return
        hdr = HDR.pack(MAGIC, VERSION, kind, len(payload), conn_id, arg, arg2, 0, 0)
        try:
            if fd is None:
                self.chan.sendmsg([hdr, payload])
            else:
                socket.send_fds(self.chan, [hdr, payload], [fd])
        except OSError:
            self.master_gone()

    def on_channel(self):
        try:
            data, fds, _, _ = socket.recv_fds(self.chan, HDR.size + MAX_PAYLOAD, 1)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:
            return self.master_gone()
        magic, version, kind, plen, conn_id, arg, _, flags, _ = HDR.unpack_from(data)
        if magic != MAGIC or version != VERSION or plen != len(data) - HDR.size:
            for fd in fds:
                os.close(fd)
            return
        payload = data[HDR.size:]
        if kind == CONN and fds:
            self.on_conn(fds[0], conn_id, arg, payload)
        elif kind == CONN:
            self.send(DECLINE, conn_id)  # the fd was dropped: out of fds
        elif kind == DRAIN:
            self.begin_drain(arg / 1000.0, flags)

    def on_conn(self, fd, conn_id, tries, prefix):
        # The connection is the master's until our ACK is sent: if we died
        # before, it would give it to another worker, request unread.
        self.send(ACK, 0, 1, 0, struct.pack("=Q", conn_id))
        if self.draining:
            # Routed here before the master saw the drain: straight back,
            # with its try count, rather than served on old code.
            self.send(CONN, conn_id, tries, 0, prefix, fd)
            os.close(fd)
            return
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        c = Conn(sock, conn_id, prefix)
        self.conns[sock.fileno()] = c
        self.sel.register(sock, selectors.EVENT_READ, c)
        self.serve(c)

    def master_gone(self):
        if self.master:
            self.master = False
            self.sel.unregister(self.chan)
            self.begin_drain(OWN_DRAIN_S, 0)

    # ---- drain ----

    def begin_drain(self, seconds, flags):
        deadline = time.monotonic() + seconds
        if self.close_from is None:
            self.close_from = time.monotonic() + CLOSE_GRACE_S
        self.leave_by = None
        self.draining = True
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        self.migrate = self.migrate or bool(flags & (F_MIGRATE_IDLE | F_SHED | F_STOP))
        self.stopping = self.stopping or bool(flags & F_STOP)
        self.release_idle()

    def release_idle(self):
        """While draining: idle connections go back to the master (at once
        with MIGRATE_IDLE or SHED, else from the deadline on), or are closed
        when it stops or is gone."""
        if not self.draining:
            return
        now = time.monotonic()
        due = self.migrate or now >= self.deadline or not self.master
        if (self.stopping or not self.master) and now < self.deadline:
            # Closed, not handed back: a client may be sending its next
            # request right now. The idle ones get a grace for it first.
            due = now >= self.close_from
        for c in list(self.conns.values()):
            if not (c.idle() and due):
                continue
            if self.master and not self.stopping:
                self.send(CONN, c.id, 0, 0, bytes(c.rbuf), c.sock.fileno())
            self.drop(c)

    def drop(self, c):
        self.sel.unregister(c.sock)
        del self.conns[c.sock.fileno()]
        c.sock.close()

    # ---- HTTP/1.1 ----

    def on_readable(self, c):
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return self.drop(c)
        c.rbuf += data
        self.serve(c)

    def serve(self, c):
        while not c.wbuf and not c.close_after:
            end = c.rbuf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(c.rbuf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers = [tuple(s.strip() for s in line.split(":", 1)) for line in lines[1:]]
            fields = {k.lower(): v for k, v in headers}
            if "chunked" in fields.get("transfer-encoding", "").lower():
                c.wbuf += b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                c.close_after = True
                break
            length = int(fields.get("content-length", "0") or 0)
            if len(c.rbuf) < end + 4 + length:
                break  # the body is still coming
            body = bytes(c.rbuf[end + 4:end + 4 + length])
            del c.rbuf[:end + 4 + length]
            conn = fields.get("connection", "").lower()
            keep = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
            # Closing, not handing back: say so with the answer, so that
            # the client's next request goes elsewhere, not into our close.
            keep = keep and not (self.draining and (self.stopping or not self.master))
            c.wbuf += self.call_app(c, method, target, version, headers, body, keep)
            c.close_after = not keep
            self.requests += 1
        self.flush(c)

    def call_app(self, c, method, target, version, headers, body, keep):
        path, _, query = target.partition("?")
        env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_PROTOCOL": version, "SCRIPT_NAME": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": os.environ.get("PORT", "0"), "wsgi.version": (1, 0),
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
               "wsgi.errors": sys.stderr, "wsgi.multithread": False,
               "wsgi.multiprocess": True, "wsgi.run_once": False}
        for k, v in headers:
            name = k.upper().replace("-", "_")
            if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                env[name] = v
            else:
                env["HTTP_" + name] = v
        status_headers = []

        def start_response(status, hdrs, exc_info=None):
            status_headers[:] = [status, hdrs]

        try:
            out = b"".join(self.app(env, start_response))
        except Exception as e:  # the app's error is a 500, not the worker's end
            print("up_wsgi: %s %s: %r" % (method, target, e), file=sys.stderr)
            status_headers[:] = ["500 Internal Server Error", []]
            out = b"internal error\n"
        status, hdrs = status_headers
        hdrs = [(k, v) for k, v in hdrs if k.lower() not in ("content-length", "connection")]
        hdrs += [("Content-Length", str(len(out)))]
        if not keep:
            hdrs.append(("Connection", "close"))
        head = "HTTP/1.1 %s\r\n%s\r\n" % (status, "".join("%s: %s\r\n" % h for h in hdrs))
        return head.encode("latin-1") + (b"" if method == "HEAD" else out)

    def flush(self, c):
        if c.wbuf:
            try:
                n = c.sock.send(c.wbuf)
                del c.wbuf[:n]
            except BlockingIOError:
                pass
            except OSError:
                return self.drop(c)
        if c.wbuf:
            self.sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            return
        self.sel.modify(c.sock, selectors.EVENT_READ, c)
        if c.close_after:
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return self.drop(c)
        if c.rbuf:
            self.serve(c)  # pipelined requests

    # ---- the loop ----

    def run(self):
        self.send(READY)
        while not self.quit:
            for key, events in self.sel.select(timeout=0.2):
                if key.data is None:
                    self.on_channel()
                elif key.fileobj.fileno() in self.conns:
                    if events & selectors.EVENT_WRITE:
                        self.flush(key.data)
                    if events & selectors.EVENT_READ and key.fileobj.fileno() in self.conns:
                        self.on_readable(key.data)
            self.release_idle()
            now = time.monotonic()
            if self.leave_by is not None and now >= self.leave_by:
                self.begin_drain(OWN_DRAIN_S, 0)  # no DRAIN came
            if now >= self.next_stats:
                self.send(STATS, 0, len(self.conns), self.requests)
                self.next_stats = now + 1.0
            if self.draining and not self.conns:
                break

    def on_term(self, *_):
        if self.draining or not self.master or self.leave_by is not None:
            self.begin_drain(OWN_DRAIN_S, 0)
        else:
            # Not the master's idea: tell it, and serve what it sends until
            # its DRAIN (at once; or, when the same stop reached the master,
            # once it gave out what it accepted).
            self.send(DRAINING)
            self.leave_by = time.monotonic() + LEAVE_WAIT_S

    def on_quit(self, *_):
        self.quit = True


def load(spec):
    module, _, attr = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module), attr or "app")


def main():
    if len(sys.argv) != 2:
        print("usage: up_wsgi.py MODULE:APP (started by up-run --exec --protocol=handoff)",
              file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one fd per client held
    try:
        app = load(sys.argv[1])
    except Exception as e:
        why = ("up_wsgi: cannot load %s: %r" % (sys.argv[1], e)).encode()
        print(why.decode(), file=sys.stderr)
        chan = socket.socket(fileno=3)
        chan.sendmsg([HDR.pack(MAGIC, VERSION, FAIL, len(why), 0, 0, 0, 0, 0), why])
        return 1
    w = Worker(app)
    signal.signal(signal.SIGTERM, w.on_term)
    signal.signal(signal.SIGQUIT, w.on_quit)
    signal.signal(signal.SIGINT, w.on_term)
    w.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
