"""Raw protocol client for hostile-input tests: speaks the framing and a few
protobuf fields by hand (no protobuf library), so a test can send exactly the
bytes it wants -- bad lengths, garbage bodies, pipelined requests -- and read
back the status codes.  Usage: rawclient.py SOCKET SCENARIO; prints one line per
response "id=<id> status=<code>" and exits 0 when the scenario ran."""
import socket
import struct
import sys


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def request(rid, body_field, body=b""):
    return field(1, 0, rid) + field(body_field, 2, body)


def hello(rid, version=1):
    return request(rid, 10, field(1, 0, version))


def frame(msg):
    return struct.pack(">I", len(msg)) + msg


def parse(buf):
    """Top-level fields of a message: {num: [values]} (varints as int, others bytes)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = read_varint(buf, i)
        elif wire == 2:
            ln, i = read_varint(buf, i)
            val, i = buf[i:i + ln], i + ln
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        else:
            raise ValueError("wire type %d" % wire)
        out.setdefault(num, []).append(val)
    return out


def read_varint(buf, i):
    shift = val = 0
    while True:
        b = buf[i]
        i += 1
        val |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return val, i


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_response(s):
    hdr = recv_exact(s, 4)
    if hdr is None:
        return None
    body = recv_exact(s, struct.unpack(">I", hdr)[0])
    f = parse(body)
    return f.get(1, [0])[0], f.get(2, [0])[0], f.get(3, [b""])[0].decode()


def report(s, n):
    for _ in range(n):
        r = read_response(s)
        if r is None:
            print("closed")
            return
        print("id=%d status=%d msg=%s" % r)


def main():
    path, scenario = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    if scenario == "no-hello":
        s.sendall(frame(request(7, 11)))               # status before hello
        report(s, 1)
    elif scenario == "bad-version":
        s.sendall(frame(hello(3, version=99)))
        report(s, 1)
    elif scenario == "garbage":
        s.sendall(frame(hello(1)) + frame(b"\xff\xff\xff\xff\xff\xff"))
        report(s, 2)
    elif scenario == "oversize":
        s.sendall(struct.pack(">I", 0xFFFFFFFF))
        report(s, 2)                                  # error, then closed
    elif scenario == "zero":
        s.sendall(struct.pack(">I", 0))
        report(s, 2)
    elif scenario == "truncated":
        s.sendall(struct.pack(">I", 100) + b"abc")
        s.shutdown(socket.SHUT_WR)
        report(s, 1)
    elif scenario == "unknown-type":
        s.sendall(frame(hello(1)) + frame(field(1, 0, 5)))   # id only, no body
        report(s, 2)
    elif scenario == "huge-shape":
        # an infer whose tensor shape has 100k (packed, empty) dimensions
        shape = b"".join(varint(0) for _ in range(100000))
        tensor = field(1, 0, 1) + field(2, 2, shape) + field(3, 2, b"")
        s.sendall(frame(hello(1)) + frame(request(9, 14, field(1, 0, 1) + field(2, 2, tensor))))
        report(s, 2)
    elif scenario == "many-params":
        # a router_set with 100k empty Param entries: refused, nothing swapped
        params = b"".join(field(2, 2, b"") for _ in range(100000))
        s.sendall(frame(hello(1)) + frame(request(9, 16, field(1, 2, b"x") + params)))
        report(s, 2)
    elif scenario == "bad-tensor":
        # dtype F32, shape [2, 64] but 12 bytes of data
        tensor = field(1, 0, 1) + field(2, 2, varint(2) + varint(64)) + field(3, 2, bytes(12))
        s.sendall(frame(hello(1)) + frame(request(4, 15, field(1, 0, 1) + field(2, 2, tensor))))
        report(s, 2)
    elif scenario == "hold":
        # open a connection, say hello, keep it open until stdin closes
        s.sendall(frame(hello(1)))
        report(s, 1)
        sys.stdin.read()
    elif scenario == "disconnect-mid-reply":
        # ask for a large result and close without reading it
        shape = varint(2000) + varint(256)
        tensor = field(1, 0, 1) + field(2, 2, shape) + field(3, 2, bytes(2000 * 256 * 4))
        s.sendall(frame(hello(1)) + frame(request(5, 14, field(1, 0, 1) + field(2, 2, tensor))))
        print("sent")
    elif scenario == "stall-mid-frame":
        # a header promising 100 bytes, 3 of them, then silence
        s.sendall(frame(hello(1)) + struct.pack(">I", 100) + b"abc")
        report(s, 3)
    elif scenario == "idle":
        # hello, then silence: the daemon closes an idle connection
        s.sendall(frame(hello(1)))
        report(s, 2)
    elif scenario == "no-read":
        # pipeline many infers and never read the replies: dropped at the hard cap
        shape = varint(64) + varint(256)
        tensor = field(1, 0, 1) + field(2, 2, shape) + field(3, 2, bytes(64 * 256 * 4))
        req = frame(request(5, 14, field(1, 0, 1) + field(2, 2, tensor)))
        s.sendall(frame(hello(1)))
        sent = 0
        try:
            s.settimeout(5)
            for _ in range(2000):
                s.sendall(req)
                sent += 1
        except OSError as e:
            print("stopped sending after %d requests: %s" % (sent, type(e).__name__))
        else:
            print("sent all %d requests" % sent)
    elif scenario in ("nan", "empty", "flood"):
        # infer on layer 1 of the synthetic S0 model (H 256): a NaN input, an
        # empty batch, or 20 pipelined 64-token requests
        import array
        rows = {"nan": 2, "empty": 0, "flood": 64}[scenario]
        x = array.array("f", [0.5] * (rows * 256))
        if scenario == "nan":
            x[256 + 3] = float("nan")
        tensor = field(1, 0, 1) + field(2, 2, varint(rows) + varint(256)) + field(3, 2, x.tobytes())
        body = field(1, 0, 1) + field(2, 2, tensor)
        n = 20 if scenario == "flood" else 1
        s.sendall(frame(hello(1)) + b"".join(frame(request(100 + i, 14, body)) for i in range(n)))
        report(s, n + 1)
    elif scenario == "half-close":
        # hello and 3 infers (layer 1, 2 tokens of H 256) pipelined, then
        # shutdown(SHUT_WR): all 4 replies must still come back before EOF
        import array
        x = array.array("f", [0.5] * (2 * 256))
        tensor = field(1, 0, 1) + field(2, 2, varint(2) + varint(256)) + field(3, 2, x.tobytes())
        body = field(1, 0, 1) + field(2, 2, tensor)
        s.sendall(frame(hello(1)) + b"".join(frame(request(101 + i, 14, body)) for i in range(3)))
        s.shutdown(socket.SHUT_WR)
        try:
            report(s, 5)
        except (ConnectionResetError, socket.timeout) as e:
            print("then %s" % type(e).__name__)
    elif scenario == "pipeline":
        # hello, then status, plugins and model without waiting
        s.sendall(frame(hello(1)) + frame(request(101, 11)) + frame(request(102, 12)) +
                  frame(request(103, 13)))
        report(s, 4)
    else:
        sys.exit("unknown scenario " + scenario)


if __name__ == "__main__":
    main()
