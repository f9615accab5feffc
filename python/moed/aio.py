"""The asyncio client, for attention servers: one connection shared by any
number of tasks.  A reader task takes each answer off the socket and resolves
the future of the request with its id, so calls from many tasks are in flight
together (the daemon may batch them), at most max_inflight at once (the
daemon's [limits] max_inflight_per_conn, default 64; more wait here instead of
being refused as busy).  Same methods, arguments, results and errors as
moed.Client; nothing is retried.

    async with moed.aio.Client() as c:
        y = await c.infer(layer, x)
"""
import asyncio

from . import _wire as w
from .errors import Unavailable


class Client:
    """Client(path=None, timeout=60, max_inflight=64); connect with `async with`
    or `await c.connect()`."""

    def __init__(self, path=None, timeout=60, max_inflight=64):
        self.path = w.socket_path(path)
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max(1, max_inflight))
        self.server_version = None
        self._reader = self._writer = self._task = None
        self._pending = {}
        self._next_id = 1
        self._broken = None

    async def connect(self):
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path, limit=w.MAX_FRAME), self.timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise Unavailable("cannot connect to %s: %s"
                              % (self.path, getattr(e, "strerror", None) or e or "timed out")) from None
        self._broken = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        try:
            h = await self._call(w.hello(self._id()))
            self.server_version = w.check_hello(h).server_version
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self):
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
            self._writer = None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        self._fail_all(Unavailable("%s: connection closed" % self.path))

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.close()

    def _id(self):
        rid = self._next_id
        self._next_id += 1
        return rid

    def _fail_all(self, err):
        self._broken = err
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()

    async def _read_loop(self):
        try:
            while True:
                n = w.parse_length(await self._reader.readexactly(4))
                resp = w.parse_response(await self._reader.readexactly(n))
                fut = self._pending.pop(resp.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(resp)
                elif resp.id == 0 and resp.status != 0:
                    w.check(resp)           # a refusal of the connection itself
        except asyncio.IncompleteReadError:
            self._fail_all(Unavailable("%s: moed closed the connection" % self.path))
        except w.Error as e:
            self._fail_all(e)
        except OSError as e:
            self._fail_all(Unavailable("%s: connection lost (%s)" % (self.path, e)))

    async def _call(self, req):
        async with self._slots:
            return await self._call1(req)

    async def _call1(self, req):
        if self._writer is None:
            await self.connect()
        if self._broken is not None:
            raise self._broken
        fut = asyncio.get_running_loop().create_future()
        self._pending[req.id] = fut
        try:
            self._writer.write(w.frame(req))
            await self._writer.drain()
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise Unavailable("%s: no answer within %s s" % (self.path, self.timeout)) from None
        except OSError as e:
            await self.close()
            raise Unavailable("%s: connection lost (%s)" % (self.path, e)) from None
        finally:
            self._pending.pop(req.id, None)
            if fut.done() and not fut.cancelled():
                fut.exception()         # retrieved: it was raised here or superseded

    async def infer(self, layer, x, dtype=None, output_dtype=None, return_routes=False):
        req, flat = w.infer_request(self._id(), layer, x, dtype, output_dtype, return_routes)
        return w.infer_result(await self._call(req), flat, return_routes)

    async def route(self, layer, x, dtype=None):
        return w.route_result(await self._call(w.route_request(self._id(), layer, x, dtype)))

    async def infer_many(self, items, dtype=None, output_dtype=None, return_routes=False,
                         window=8):
        sem = asyncio.Semaphore(max(1, window))

        async def one(layer, x):
            async with sem:
                return await self.infer(layer, x, dtype, output_dtype, return_routes)
        results = await asyncio.gather(*(one(l, x) for l, x in items), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)

    async def status(self):
        resp = await self._call(w.simple_request(self._id(), "status"))
        return w.status_dict(w.check(resp, "status_info"))

    async def model(self):
        return w.model_dict(w.check(await self._call(w.simple_request(self._id(), "model")),
                                    "model"))

    async def cluster(self):
        """Where the experts live under mpirun, as `moectl --json cluster show`
        prints it ({"enabled": False, ...} on a single process)."""
        resp = await self._call(w.simple_request(self._id(), "cluster_show"))
        return w.cluster_dict(w.check(resp, "cluster"))

    async def cluster_rebalance(self):
        """Rebalance the experts over the ranks by the stats window's load (admin)."""
        resp = await self._call(w.simple_request(self._id(), "cluster_rebalance"))
        return w.cluster_dict(w.check(resp, "cluster"), rebalance=True)

    async def stats(self, layer=None):
        resp = await self._call(w.simple_request(self._id(), "stats", layer))
        return w.stats_dict(w.check(resp, "stats"))
