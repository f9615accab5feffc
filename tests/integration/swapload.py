"""Load generator for the hot-swap test: N client threads send the same infer
request over and over (each on its own connection, hand-encoded protocol from
rawclient.py) until told to stop, and record for every reply its status, the
router and generation it names, and its output.  Writes a JSON summary and, per
generation, the distinct outputs seen (as .npy), so the test can compare each
with the reference output of that generation's router configuration.

usage: swapload.py SOCKET X.npy LAYER CLIENTS STOPFILE OUTDIR
Runs until STOPFILE exists.  Exit 0 when it ran (failures are in the summary)."""
import hashlib
import json
import os
import socket
import struct
import sys
import threading

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawclient import field, frame, hello, parse, read_response, recv_exact, varint  # noqa: E402


def infer_request(rid, layer, x):
    shape = varint(x.shape[0]) + varint(x.shape[1])
    tensor = field(1, 0, 1) + field(2, 2, shape) + field(3, 2, x.astype("<f4").tobytes())
    return field(1, 0, rid) + field(14, 2, field(1, 0, layer) + field(2, 2, tensor))


def read_full(s):
    hdr = recv_exact(s, 4)
    if hdr is None:
        return None
    return parse(recv_exact(s, struct.unpack(">I", hdr)[0]))


def client(path, x, layer, stopfile, results, lock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    s.sendall(frame(hello(1)))
    read_response(s)
    rid = 1
    local = {"ok": 0, "failed": 0, "errors": [], "outputs": {}}
    while not os.path.exists(stopfile):
        rid += 1
        try:
            s.sendall(frame(infer_request(rid, layer, x)))
            f = read_full(s)
        except OSError as e:    # the daemon dropped a client that did nothing wrong
            f, e = None, e
            local["errors"].append("connection lost: %s" % e)
        if f is None:
            local["failed"] += 1
            local["errors"].append("connection closed")
            break
        status = f.get(2, [0])[0]
        if status != 0:
            local["failed"] += 1
            local["errors"].append("status %d: %s" % (status, f.get(3, [b""])[0].decode()))
            continue
        inf = parse(f[14][0])
        out = parse(inf[1][0])[3][0]
        router = inf[2][0].decode()
        gen = inf[3][0]
        key = (gen, hashlib.sha1(out).hexdigest())
        if key not in local["outputs"]:
            local["outputs"][key] = (router, out)
        local["ok"] += 1
    s.close()
    with lock:
        results.append(local)


def main():
    path, xfile, layer, n, stopfile, outdir = sys.argv[1:7]
    x = np.load(xfile).astype(np.float32)
    results, lock = [], threading.Lock()
    threads = [threading.Thread(target=client, args=(path, x, int(layer), stopfile, results, lock))
               for _ in range(int(n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = {}
    for r in results:
        outputs.update(r["outputs"])
    os.makedirs(outdir, exist_ok=True)
    seen = []
    for i, ((gen, digest), (router, out)) in enumerate(sorted(outputs.items())):
        name = "gen%d_%d.npy" % (gen, i)
        np.save(os.path.join(outdir, name), np.frombuffer(out, "<f4").reshape(x.shape))
        seen.append({"generation": gen, "router": router, "file": name})
    summary = {"ok": sum(r["ok"] for r in results), "failed": sum(r["failed"] for r in results),
               "errors": [e for r in results for e in r["errors"]][:20], "outputs": seen}
    json.dump(summary, open(os.path.join(outdir, "summary.json"), "w"), indent=1)
    print("swapload: %d ok, %d failed, %d distinct (generation, output) pairs"
          % (summary["ok"], summary["failed"], len(seen)))


if __name__ == "__main__":
    main()
