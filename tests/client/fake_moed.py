"""A misbehaving stand-in for moed, to check that moectl fails with exit 3 and
a reason (and within its timeout) instead of hanging or crashing.  Speaks the
framing and the few protobuf fields it needs by hand.  Usage:
fake_moed.py SOCKET MODE, MODE one of
  silent     read requests, never answer
  garbage    answer hello with bytes that are not a Response
  version    answer hello with protocol_version 2
  nobody     accept hello, answer the next request OK with no body
  stall      accept hello, then send half a reply frame and stop
  cluster    accept hello, answer a cluster show / rebalance with a
             three-rank job (see cluster_reply)
  refused    answer hello FAILED_PRECONDITION
  reorder    read hello and the request behind it (moectl pipelines the
             two), answer the request NOT_FOUND first, then the hello
Serves one connection, then exits."""
import os
import socket
import struct
import sys
import time


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def read_frame(conn):
    head = b""
    while len(head) < 4:
        chunk = conn.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    n = struct.unpack(">I", head)[0]
    body = b""
    while len(body) < n:
        chunk = conn.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def request_id(body):
    # Request.id is field 1, a varint, and protobuf-c packs it first
    assert body[0] == 0x08
    n, shift, i = 0, 0, 1
    while True:
        n |= (body[i] & 0x7F) << shift
        if not body[i] & 0x80:
            return n
        shift += 7
        i += 1


def hello(rid, version=1):
    body = field(1, 0, version) + field(2, 2, b"fake")
    return field(1, 0, rid) + field(2, 0, 0) + field(10, 2, body)


def varints(values):
    return b"".join(varint(v) for v in values)


def double(num, x):
    return varint(num << 3 | 1) + struct.pack("<d", x)


def body_field(body):
    """The field number of a Request's body (after the id)."""
    i = 1
    while body[i] & 0x80:
        i += 1
    n, shift, i = 0, 0, i + 1
    while True:
        n |= (body[i] & 0x7F) << shift
        if not body[i] & 0x80:
            return n >> 3
        shift += 7
        i += 1


def cluster_reply(rid, rebalance):
    """ClusterResponse (Response field 21): balanced, 1 replica, epoch 4, the
    front (rank 0, computes nothing) and ranks 1, 2 holding layer 3's experts
    0 1 2 / 2 3 (expert 2 twice), 1.5 GiB each; balancedness 0.9 (before: 0.6)."""
    def rank(r, host, ids, computed, window):
        m = field(1, 0, r) + field(2, 2, host) + field(3, 0, 4000 + r)
        if ids:
            m += field(4, 2, field(1, 0, 3) + field(2, 2, varints(ids)) +
                       field(3, 2, varints(computed)))
        m += field(5, 0, 3 << 29 if ids else 0) + field(6, 0, window)
        return m + field(7, 0, int(r == 0)) + field(8, 0, 11 if ids else 0)
    cl = field(1, 0, 1)
    cl += field(2, 2, rank(0, b"front.example", [], [], 0))
    cl += field(2, 2, rank(1, b"node-a", [0, 1, 2], [300, 20, 7], 327))
    cl += field(2, 2, rank(2, b"node-b", [2, 3], [8, 5], 13))
    cl += field(3, 2, field(1, 0, 3) + double(2, 0.9))
    cl += field(4, 2, b"balanced") + field(5, 0, 1) + field(6, 0, 4) + field(7, 0, 0)
    cl += field(8, 0, 10000)
    if rebalance:
        cl += field(9, 2, field(1, 0, 3) + double(2, 0.6))
    return field(1, 0, rid) + field(2, 0, 0) + field(21, 2, cl)


def send(conn, msg):
    conn.sendall(struct.pack(">I", len(msg)) + msg)


def main():
    path, mode = sys.argv[1], sys.argv[2]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path + ".tmp")
    srv.listen(1)
    os.rename(path + ".tmp", path)      # the path appears only once listening
    conn, _ = srv.accept()
    req = read_frame(conn)
    if req is None:
        return
    rid = request_id(req)
    if mode == "silent":
        while read_frame(conn) is not None:
            pass
        return
    if mode == "garbage":
        send(conn, b"\xff\xff\xff\xff")
    elif mode == "refused":
        send(conn, field(1, 0, rid) + field(2, 0, 9) + field(3, 2, b"fake: no hello today"))
    elif mode == "reorder":
        req = read_frame(conn)
        if req is None:
            return
        send(conn, field(1, 0, request_id(req)) + field(2, 0, 5) +
             field(3, 2, b"fake: answered before the hello"))
        send(conn, hello(rid))
    elif mode == "version":
        send(conn, hello(rid, 2))
    else:
        send(conn, hello(rid))
        req = read_frame(conn)
        if req is None:
            return
        rid = request_id(req)
        if mode == "nobody":
            send(conn, field(1, 0, rid) + field(2, 0, 0))
        elif mode == "cluster":
            send(conn, cluster_reply(rid, body_field(req) == 25))
        elif mode == "stall":
            conn.sendall(struct.pack(">I", 100) + b"\x08")
            time.sleep(30)
    conn.recv(1)


if __name__ == "__main__":
    main()
