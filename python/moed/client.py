"""The blocking client: one Unix-socket connection to moed, opened (with the
protocol's hello) when the Client is made.  Calls send a frame and read frames
until the one with their id comes back; infer_many keeps a window of requests
in flight and puts the answers back in request order.  A Client is not
thread-safe: use one per thread, or moed.aio for many concurrent callers.

Nothing is retried: a request whose answer is lost raises moed.Unavailable and
the connection is closed (the next call reconnects), so a caller never has an
admin change applied twice behind its back.
"""
import socket

from . import _wire as w
from .errors import Unavailable


class Client:
    """Client(path=None, timeout=60): connect to moed at path (default
    $MOED_SOCKET, else /run/moed.sock); timeout in seconds for each answer."""

    def __init__(self, path=None, timeout=60):
        self.path = w.socket_path(path)
        self.timeout = timeout
        self.server_version = None
        self._sock = None
        self._next_id = 1
        self._connect()

    # ---- connection ----
    def _connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise Unavailable("cannot connect to %s: %s" % (self.path, e.strerror or e)) from None
        self._sock = s
        self._buf = bytearray()
        try:
            rid = self._id()
            self._send(w.hello(rid))
            self.server_version = w.check_hello(self._recv(rid)).server_version
        except BaseException:
            self.close()
            raise

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _id(self):
        rid = self._next_id
        self._next_id += 1
        return rid

    def _lost(self, why):
        self.close()
        return Unavailable("%s: %s" % (self.path, why))

    def _send(self, req):
        if self._sock is None:
            self._connect()
        try:
            self._sock.sendall(w.frame(req))
        except socket.timeout:
            raise self._lost("could not send within %s s" % self.timeout) from None
        except OSError as e:
            raise self._lost("connection lost (%s)" % (e.strerror or e)) from None

    def _read(self, n):
        while len(self._buf) < n:
            try:
                chunk = self._sock.recv(max(65536, n - len(self._buf)))
            except socket.timeout:
                raise self._lost("no answer within %s s" % self.timeout) from None
            except OSError as e:
                raise self._lost("connection lost (%s)" % (e.strerror or e)) from None
            if not chunk:
                raise self._lost("moed closed the connection")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _recv_any(self):
        if self._sock is None:
            raise Unavailable("%s: not connected" % self.path)
        n = w.parse_length(self._read(4))
        resp = w.parse_response(self._read(n))
        if resp.id == 0 and resp.status != 0:
            # a refusal of the connection itself (e.g. over its buffer budget)
            self.close()
            w.check(resp)
        return resp

    def _recv(self, rid):
        resp = self._recv_any()
        if resp.id != rid:
            raise self._lost("protocol error: answer to request %d where %d was due"
                             % (resp.id, rid))
        return resp

    def _call(self, req):
        self._send(req)
        return self._recv(req.id)

    # ---- requests ----
    def infer(self, layer, x, dtype=None, output_dtype=None, return_routes=False):
        """Run MoE layer `layer` on hidden states x [T, H] (or [H]).

        x is float32, or bf16 bits in a uint16 array with dtype='bf16' (a
        float array with dtype='bf16' is rounded to bf16 first).  The output
        comes back in output_dtype (default: the dtype sent): float32, or bf16
        bits as uint16.  With return_routes=True returns (y, experts, weights)
        as route() gives them."""
        req, flat = w.infer_request(self._id(), layer, x, dtype, output_dtype, return_routes)
        return w.infer_result(self._call(req), flat, return_routes)

    def route(self, layer, x, dtype=None):
        """The experts (int32 [T, k]) and weights (float32 [T, k]) for x."""
        return w.route_result(self._call(w.route_request(self._id(), layer, x, dtype)))

    def infer_many(self, items, dtype=None, output_dtype=None, return_routes=False, window=8):
        """infer() for each (layer, x) in items with up to `window` requests in
        flight on this connection; the results in the order of items.  If any
        is refused, every answer is still read and the first refusal (in item
        order) is raised."""
        items = list(items)
        results = [None] * len(items)
        reqs, pending, nxt = [], {}, 0
        for layer, x in items:
            reqs.append(w.infer_request(self._id(), layer, x, dtype, output_dtype, return_routes))
        while nxt < len(reqs) or pending:
            while nxt < len(reqs) and len(pending) < max(1, window):
                self._send(reqs[nxt][0])
                pending[reqs[nxt][0].id] = nxt
                nxt += 1
            resp = self._recv_any()
            i = pending.pop(resp.id, None)
            if i is None:
                raise self._lost("protocol error: answer to unknown request %d" % resp.id)
            try:
                results[i] = w.infer_result(resp, reqs[i][1], return_routes)
            except w.Error as e:
                results[i] = e
        for r in results:
            if isinstance(r, w.Error):
                raise r
        return results

    def status(self):
        """The daemon's status as `moectl --json status` prints it."""
        resp = self._call(w.simple_request(self._id(), "status"))
        return w.status_dict(w.check(resp, "status_info"))

    def model(self):
        """The served model as `moectl --json model` prints it."""
        return w.model_dict(w.check(self._call(w.simple_request(self._id(), "model")), "model"))

    def cluster(self):
        """Where the experts live under mpirun, as `moectl --json cluster show`
        prints it ({"enabled": False, ...} on a single process)."""
        resp = self._call(w.simple_request(self._id(), "cluster_show"))
        return w.cluster_dict(w.check(resp, "cluster"))

    def cluster_rebalance(self):
        """Rebalance the experts over the ranks by the stats window's load (admin)."""
        resp = self._call(w.simple_request(self._id(), "cluster_rebalance"))
        return w.cluster_dict(w.check(resp, "cluster"), rebalance=True)

    def stats(self, layer=None):
        """Per-layer statistics as `moectl --json stats` prints them."""
        resp = self._call(w.simple_request(self._id(), "stats", layer))
        return w.stats_dict(w.check(resp, "stats"))
