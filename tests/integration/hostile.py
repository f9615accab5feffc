"""Multi-client attacks for tests/integration/hostile_*.sh (issue 13), built on
rawclient.py's hand-made frames.  Usage: hostile.py SOCKET SCENARIO ARGS...;
prints what it saw, one line per finding, and exits non-zero with the reason
when the daemon misbehaved.  Every socket has a timeout, so a daemon that stops
answering fails the scenario instead of hanging it; the daemon's memory is read
from /proc/PID/status while the attack runs.

  no-read PID H CLIENTS REQUESTS WRITE_TIMEOUT_MS BOUND_KIB
      CLIENTS connections pipeline REQUESTS infers of 64 tokens (paced at
      2 per 10 ms, so they are computed, not answered busy) and never read.
      The daemon's RSS must stay below its RSS before + BOUND_KIB, a normal
      `moectl infer` must succeed meanwhile, and within WRITE_TIMEOUT_MS + 3 s
      of the last request sent the daemon must have closed every one of them.
  partial PID CLIENTS ANNOUNCE_BYTES SEND_BYTES BOUND_KIB
      CLIENTS connections say hello, then send a frame header announcing
      ANNOUNCE_BYTES and SEND_BYTES of its body.  Some must be refused with
      RESOURCE_EXHAUSTED (8) naming max_buffered_bytes and closed, RSS must
      stay below its RSS before + BOUND_KIB, and a normal infer must succeed.
  nan-state FILE BIAS_JSON
      Set the first bias value of the first layer in BIAS_JSON (the output of
      `moectl --json bias show`) to NaN in the saved state FILE, and fix up its
      FNV-1a 64 checksum (the last 8 bytes, over all before them).
"""
import errno
import math
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawclient import field, frame, hello, read_response, request, varint  # noqa: E402

RESOURCE_EXHAUSTED = 8


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


class RssWatch(threading.Thread):
    """Samples the daemon's RSS every 20 ms until stopped; keeps the peak."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, rss_kib(pid), threading.Event()

    def run(self):
        while not self.done.wait(0.02):
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, RuntimeError):
                return

    def stop(self):
        self.done.set()
        self.join(2)
        return self.peak


def connect(path, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def infer_body(layer, tokens, hidden, value=0.5):
    import array
    x = array.array("f", [value] * (tokens * hidden))
    tensor = field(1, 0, 1) + field(2, 2, varint(tokens) + varint(hidden)) + field(3, 2, x.tobytes())
    return field(1, 0, layer) + field(2, 2, tensor)


def moectl_infer(path):
    """A normal client: `moectl infer` on layer 1, bounded."""
    moectl = os.environ.get("MOECTL", "moectl")
    try:
        p = subprocess.run([moectl, "-s", path, "infer", "--layer", "1", "--random", "2"],
                           capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False, "moectl infer still running after 20 s"
    return p.returncode == 0, (p.stdout + p.stderr).strip().replace("\n", " | ")[:200]


def peer_closed(s):
    """Has the daemon closed its end?  A send to a closed Unix stream peer fails
    with EPIPE at once; an open peer takes the byte or would block."""
    s.setblocking(False)
    try:
        s.send(b"\0")
    except BlockingIOError:
        return False
    except OSError as e:
        return e.errno in (errno.EPIPE, errno.ECONNRESET)
    return False


def drain(s, timeout):
    """Read until EOF; (bytes read, how it ended)."""
    s.settimeout(timeout)
    n = 0
    while True:
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            return n, "no EOF after %g s" % timeout
        except ConnectionResetError:
            return n, "ECONNRESET"
        if not chunk:
            return n, "EOF"
        n += len(chunk)


def no_read(path, pid, hidden, clients, requests, write_timeout_ms, bound_kib):
    req = frame(request(5, 14, infer_body(1, 64, hidden)))
    rss0 = rss_kib(pid)
    watch = RssWatch(pid)
    watch.start()
    socks = [connect(path, 1.0) for _ in range(clients)]
    stops = [None] * clients

    def attack(i):
        s, sent, how = socks[i], 0, "sent all"
        try:
            s.sendall(frame(hello(1)))
            # 2 every 10 ms: about what 2 cores compute, so the daemon takes
            # them instead of answering busy (max_inflight_per_conn)
            for sent in range(0, requests, 2):
                s.sendall(req * min(2, requests - sent))
                time.sleep(0.01)
            sent = requests
        except socket.timeout:
            how = "blocked"
        except OSError as e:
            how = "closed (%s)" % errno.errorcode.get(e.errno, e.errno)
        stops[i] = (time.monotonic(), sent, how)

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    served, said = moectl_infer(path)
    if None in stops:
        return ["client %d still sending after 120 s" % stops.index(None)]
    last = max(st[0] for st in stops)
    time.sleep(max(0.0, last + (write_timeout_ms + 3000) / 1000.0 - time.monotonic()))
    closed = [peer_closed(s) for s in socks]
    drained = [drain(s, 3.0) for s in socks]
    peak = watch.stop()
    for s in socks:
        s.close()
    bad = []
    for i in range(clients):
        print("client %d: %s after %d requests; closed by the daemon: %s; then read %d bytes, %s"
              % (i, stops[i][2], stops[i][1], closed[i], drained[i][0], drained[i][1]))
        if not closed[i] or drained[i][1] == "no EOF after 3 s":
            bad.append("client %d not closed within write_timeout_ms + 3 s" % i)
    print("daemon RSS %d KiB before, peak %d KiB (+%d, bound +%d)" % (rss0, peak, peak - rss0, bound_kib))
    print("normal infer meanwhile: %s: %s" % ("ok" if served else "FAILED", said))
    if peak - rss0 >= bound_kib:
        bad.append("RSS grew by %d KiB, bound %d KiB" % (peak - rss0, bound_kib))
    if not served:
        bad.append("a normal infer failed during the attack: " + said)
    return bad


def partial(path, pid, clients, announce, send, bound_kib):
    rss0 = rss_kib(pid)
    watch = RssWatch(pid)
    watch.start()
    results = [None] * clients
    socks = []
    for _ in range(clients):
        s = connect(path, 5.0)
        s.sendall(frame(hello(1)))
        r = read_response(s)
        if not r or r[1] != 0:
            return ["hello refused: %r" % (r,)]
        socks.append(s)
    body = bytes(send)

    def attack(i):
        s, how = socks[i], "sent"
        try:
            s.sendall(struct.pack(">I", announce) + body)
        except socket.timeout:
            how = "send blocked"
        except OSError as e:
            how = "send failed (%s)" % errno.errorcode.get(e.errno, e.errno)
        s.settimeout(3.0)
        try:
            r = read_response(s)
        except socket.timeout:
            results[i] = (how, "held (no reply in 3 s)", None, None)
            return
        except ConnectionResetError:
            results[i] = (how, "ECONNRESET", None, None)
            return
        after = None
        if r is not None:
            try:
                after = read_response(s)
                after = "closed" if after is None else "another reply %r" % (after,)
            except socket.timeout:
                after = "not closed after its reply"
            except ConnectionResetError:
                after = "closed"
        results[i] = (how, "replied" if r else "closed without a reply", r, after)

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    served, said = moectl_infer(path)
    peak = watch.stop()
    for s in socks:
        s.close()
    bad, refused = [], 0
    for i, (how, what, r, after) in enumerate(results):
        print("client %d: %s, %s%s%s" % (i, how, what, "" if r is None else ": status %d %s" % (r[1], r[2]),
                                         "" if after is None else "; then " + after))
        if r is None:
            continue
        if r[1] != RESOURCE_EXHAUSTED or "max_buffered_bytes" not in r[2]:
            bad.append("client %d: status %d '%s', want %d naming max_buffered_bytes"
                       % (i, r[1], r[2], RESOURCE_EXHAUSTED))
        elif after != "closed":
            bad.append("client %d refused but %s" % (i, after))
        else:
            refused += 1
    print("%d of %d refused; daemon RSS %d KiB before, peak %d KiB (+%d, bound +%d)"
          % (refused, clients, rss0, peak, peak - rss0, bound_kib))
    print("normal infer meanwhile: %s: %s" % ("ok" if served else "FAILED", said))
    if refused == 0:
        bad.append("none of the %d partial frames of %d bytes was refused" % (clients, announce))
    if peak - rss0 >= bound_kib:
        bad.append("RSS grew by %d KiB, bound %d KiB" % (peak - rss0, bound_kib))
    if not served:
        bad.append("a normal infer failed during the attack: " + said)
    return bad


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def nan_state(path, bias_json):
    """Find the first saved layer's bias (as `moectl --json bias show` printed
    it, packed little-endian f32) in the file, set its first value to NaN and
    recompute the checksum.  Only two things of the format are assumed, both
    from daemon/state.c: a bias is stored as E contiguous f32, and the file ends
    with the FNV-1a 64 of everything before it (checked before patching)."""
    import json
    data = bytearray(open(path, "rb").read())
    if len(data) < 16 or struct.unpack("<Q", data[-8:])[0] != fnv1a64(data[:-8]):
        return ["%s does not end with the FNV-1a 64 of its contents" % path]
    layer = json.load(open(bias_json))["layers"][0]
    packed = struct.pack("<%df" % len(layer["bias"]), *layer["bias"])
    off = data.find(packed)
    if off < 0 or data.find(packed, off + 1) >= 0:
        return ["layer %d's bias is not stored once in %s" % (layer["layer"], path)]
    data[off:off + 4] = struct.pack("<f", math.nan)
    data[-8:] = struct.pack("<Q", fnv1a64(data[:-8]))
    open(path, "wb").write(bytes(data))
    print("%s: layer %d bias[0] %g (offset %d) -> NaN, checksum fixed up"
          % (path, layer["layer"], layer["bias"][0], off))
    return []


def main():
    path, scenario, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if scenario == "no-read":
        bad = no_read(path, *(int(a) for a in args))
    elif scenario == "partial":
        bad = partial(path, *(int(a) for a in args))
    elif scenario == "nan-state":
        bad = nan_state(args[0], args[1])
    else:
        sys.exit("unknown scenario " + scenario)
    for b in bad:
        print("BAD: " + b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
