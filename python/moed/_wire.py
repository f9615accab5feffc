"""The wire format shared by the blocking and the asyncio client.

A frame is a 4-byte big-endian length and a serialised moed.Request (to the
daemon) or moed.Response (from it); see moed-protocol(7).  This module builds
requests, turns numpy arrays into Tensor messages and back, and shapes answers
into the dicts `moectl --json` prints, so both clients share one definition.
Nothing here touches a socket.
"""
import os
import struct

import numpy as np

from . import moed_pb2 as pb
from .errors import Error, Unavailable

PROTOCOL_VERSION_MIN = 1        # proto/version.h
PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/run/moed.sock"
MAX_FRAME = 1 << 30             # a sanity bound on what we accept, not the daemon's limit
HEADER = struct.Struct(">I")

_DTYPES = {"f32": pb.F32, "fp32": pb.F32, "float32": pb.F32, "bf16": pb.BF16, "bfloat16": pb.BF16}


def socket_path(path):
    """The socket moectl would use: path, else $MOED_SOCKET, else /run/moed.sock."""
    return path or os.environ.get("MOED_SOCKET") or DEFAULT_SOCKET


def frame(req):
    body = req.SerializeToString()
    return HEADER.pack(len(body)) + body


def parse_length(head):
    (n,) = HEADER.unpack(head)
    if n == 0 or n > MAX_FRAME:
        raise Unavailable("protocol error: reply frame of %d bytes" % n)
    return n


def parse_response(body):
    resp = pb.Response()
    try:
        resp.ParseFromString(body)
    except Exception as e:      # google.protobuf.message.DecodeError
        raise Unavailable("protocol error: undecodable reply (%s)" % e) from None
    return resp


def check(resp, want=None):
    """Raise the daemon's refusal as moed.Error (moed.Unavailable for UNAVAILABLE)."""
    if resp.status != pb.OK:
        name = pb.Status.Name(resp.status) if resp.status in pb.Status.values() else str(resp.status)
        cls = Unavailable if resp.status == pb.UNAVAILABLE else Error
        raise cls(resp.message or "(no message)", status=name)
    if want and resp.WhichOneof("body") != want:
        raise Unavailable("protocol error: a %s reply where %s was due"
                          % (resp.WhichOneof("body"), want))
    return getattr(resp, want) if want else resp


def hello(rid):
    req = pb.Request(id=rid)
    req.hello.protocol_version = PROTOCOL_VERSION
    req.hello.min_protocol_version = PROTOCOL_VERSION_MIN
    req.hello.max_protocol_version = PROTOCOL_VERSION
    req.hello.client = "moed-python"
    return req


def check_hello(resp):
    h = check(resp, "hello")
    if not PROTOCOL_VERSION_MIN <= h.protocol_version <= PROTOCOL_VERSION:
        raise Unavailable("moed %s answered protocol version %d; this client speaks %d..%d"
                          % (h.server_version, h.protocol_version, PROTOCOL_VERSION_MIN,
                             PROTOCOL_VERSION))
    return h


def wire_dtype(name):
    if name is None:
        return None
    try:
        return _DTYPES[str(name).lower()]
    except KeyError:
        raise ValueError("dtype %r: want 'f32' or 'bf16'" % (name,)) from None


def f32_to_bf16(x):
    """float32 -> bf16 bits (uint16), rounding to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    r = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def bf16_to_f32(b):
    """bf16 bits (uint16) -> float32, exact."""
    return (np.ascontiguousarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


def hidden_tensor(t, x, dtype):
    """Fill Tensor t from x ([T, H] or [H]); returns (wire dtype, was 1-D).

    float arrays go as F32 unless dtype is 'bf16' (then rounded to bf16);
    uint16 arrays hold bf16 bits and need dtype='bf16'.  A torch tensor passes
    through its numpy view (x.numpy(); bf16: x.view(torch.uint16).numpy())."""
    want = wire_dtype(dtype)
    if not isinstance(x, np.ndarray) and hasattr(x, "numpy"):
        x = x.numpy()
    x = np.asarray(x)
    flat = x.ndim == 1
    if flat:
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise ValueError("x has shape %s; want [T, H] (or [H] for one token)" % (x.shape,))
    if x.dtype == np.uint16:
        if want != pb.BF16:
            raise TypeError("a uint16 array holds bf16 bits: pass dtype='bf16'")
        data, dt = np.ascontiguousarray(x, "<u2"), pb.BF16
    elif x.dtype.kind == "f":
        x32 = np.ascontiguousarray(x, "<f4")
        if want == pb.BF16:
            data, dt = f32_to_bf16(x32), pb.BF16
        else:
            data, dt = x32, pb.F32
    else:
        raise TypeError("x has dtype %s; want float32 (or bf16 bits as uint16)" % x.dtype)
    t.dtype = dt
    t.shape[:] = list(data.shape)
    t.data = data.tobytes()
    return dt, flat


def array(t, rows=None):
    """A Tensor as a numpy array: F32 float32, BF16 uint16 bits, I32 int32."""
    kinds = {pb.F32: "<f4", pb.BF16: "<u2", pb.I32: "<i4"}
    if t.dtype not in kinds or len(t.shape) != 2:
        raise Unavailable("protocol error: reply tensor %s %s" % (t.dtype, list(t.shape)))
    a = np.frombuffer(t.data, kinds[t.dtype])
    if a.size != t.shape[0] * t.shape[1] or (rows is not None and t.shape[0] != rows):
        raise Unavailable("protocol error: reply tensor shape %s for %d bytes"
                          % (list(t.shape), len(t.data)))
    return a.reshape(t.shape[0], t.shape[1]).astype(a.dtype.newbyteorder("="))


def infer_request(rid, layer, x, dtype=None, output_dtype=None, return_routes=False):
    req = pb.Request(id=rid)
    req.infer.layer = layer
    _, flat = hidden_tensor(req.infer.hidden, x, dtype)
    out = wire_dtype(output_dtype)
    if out is not None:
        req.infer.output_dtype = out
    if return_routes:
        req.infer.return_routes = True
    return req, flat


def infer_result(resp, flat, return_routes):
    r = check(resp, "infer")
    y = array(r.output)
    rows = y.shape[0]
    if flat:
        y = y.reshape(-1)
    if not return_routes:
        return y
    if not (r.HasField("experts") and r.HasField("weights")):
        raise Unavailable("protocol error: return_routes asked, no routes in the reply "
                          "(the daemon predates return_routes)")
    return y, array(r.experts, rows), array(r.weights, rows)


def route_request(rid, layer, x, dtype=None):
    req = pb.Request(id=rid)
    req.route.layer = layer
    hidden_tensor(req.route.hidden, x, dtype)
    return req


def route_result(resp):
    r = check(resp, "route")
    e = array(r.experts)
    return e, array(r.weights, e.shape[0])


def simple_request(rid, kind, layer=None):
    req = pb.Request(id=rid)
    getattr(req, kind).SetInParent()
    if layer is not None:
        req.stats.layer = layer
    return req


# ---- answers as the dicts `moectl --json` prints (client/cmd_info.c, cmd_admin.c) ----

_MODEL_RENAME = {"has_bias": "e_score_correction_bias"}


def model_dict(m):
    """Every ModelInfo field under its proto name (has_bias as moectl's
    e_score_correction_bias, dtype by name), so fields added later appear too."""
    d = {}
    for f in m.DESCRIPTOR.fields:
        if f.label != f.LABEL_REPEATED and not m.HasField(f.name):
            continue
        v = getattr(m, f.name)
        if f.label == f.LABEL_REPEATED:
            v = list(v)
        elif f.enum_type is not None:
            v = f.enum_type.values_by_number[v].name if v in f.enum_type.values_by_number else v
        d[_MODEL_RENAME.get(f.name, f.name)] = v
    return d


def plugin_dict(p):
    d = {"name": p.name, "kind": p.kind, "abi_version": p.abi_version}
    for k in ("generation", "description", "path", "error"):
        if p.HasField(k):
            d[k] = getattr(p, k)
    if len(p.params):
        d["params"] = [{k: getattr(q, k) for k in ("name", "type", "min", "max", "default", "help")
                        if k in ("name", "type") or q.HasField(k)} for q in p.params]
    return d


def status_dict(s):
    return {"version": s.version, "pid": s.pid, "uptime_ms": s.uptime_ms,
            "requests_served": s.requests_served, "tokens_served": s.tokens_served,
            "connections": s.connections, "workers": s.workers,
            "health": s.health if s.HasField("health") else "ok",
            "timed_out": s.timed_out, "abandoned_calls": s.abandoned_calls,
            "backend_bytes": s.backend_bytes,
            "model": model_dict(s.model), "plugins": [plugin_dict(p) for p in s.plugins]}


def _latency(l):
    return {"count": l.count, "p50_us": l.p50_us, "p90_us": l.p90_us, "p99_us": l.p99_us}


def stats_dict(s):
    return {"uptime_ms": s.uptime_ms,
            "layers": [{"layer": l.layer, "router": l.router, "generation": l.generation,
                        "load": list(l.load), "window_load": list(l.window_load),
                        "window_tokens": l.window_tokens, "max_vio": l.max_vio,
                        "max_vio_total": l.max_vio_total, "bias": list(l.bias),
                        "bias_frozen": l.bias_frozen, "requests": l.requests,
                        "batches": l.batches, "tokens": l.tokens,
                        "compute_latency": _latency(l.compute),
                        "request_latency": _latency(l.request)} for l in s.layers]}


def _opt(m, name):
    return getattr(m, name) if m.HasField(name) else None


def cluster_dict(c, rebalance=False):
    """The placement as `moectl --json cluster show` prints it (client/cluster_fmt.c):
    layers as string keys, absent optional fields as None."""
    def balance(bs):
        return {str(b.layer): b.balancedness for b in bs}

    def rank(r):
        d = {"rank": r.rank, "host": _opt(r, "host"), "pid": _opt(r, "pid"),
             "front": _opt(r, "front"),
             "experts": {str(x.layer): list(x.ids) for x in r.experts},
             "computed": {str(x.layer): list(x.computed) for x in r.experts}}
        for k in ("bytes", "window_tokens", "dispatches", "bytes_out", "bytes_in", "compute_us"):
            d[k] = _opt(r, k)
        return d

    d = {"enabled": c.enabled, "placement": _opt(c, "placement")}
    for k in ("replicas", "epoch", "front_computes", "timeout_ms", "calls", "split_us",
              "local_us", "wait_us", "combine_us"):
        d[k] = _opt(c, k)
    d["ranks"] = [rank(r) for r in c.ranks] if c.enabled else []
    d["balancedness"] = balance(c.balancedness)
    if rebalance:
        d["previous"] = balance(c.previous)
    return d
