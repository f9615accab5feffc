#!/usr/bin/python3
"""Expert parallelism on one machine: S1 (H 2048, I 1408, 64 experts top-6, 2
shared) served by one process and by mpirun jobs of N = 1, 2, 3 ranks, for
T = 1..1024 tokens per call.  For every (N, T): tokens/s and latency of one
client (moectl bench), and from the front's counters (moectl cluster show)
the dispatch + combine cost per call separately from compute: the time the
front spends splitting and queueing, its own share of the compute, waiting for
the ranks after its share, and adding their sums; bytes out and back per call;
each rank's compute per call.  Then a throughput model for N hosts on 25 and
100 Gb/s links from the measured per-rank compute, and the host count of the
DeepSeek-V3 FP8 experts at 24 and 512 GB per host.

usage: cluster_bench.py BUILDDIR [--duration S] [--tokens 1,4,...] [--ranks 1,2,3]
Writes a markdown report to stdout.  Needs mpirun and the built MPI module;
the machine should be otherwise idle (2 cores here: 3 ranks oversubscribe)."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

V3_EXPERT_BYTES = 58 * 256 * 3 * 7168 * 2048     # FP8, one byte per weight
V3_SCALE_BYTES = 58 * 256 * 3 * (7168 // 128) * (2048 // 128) * 4


def moectl(b, sock, *args):
    out = subprocess.run([os.path.join(b, "moectl"), "-s", sock, "--json"] + list(args),
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def wait_up(b, sock, proc):
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit("moed exited during start")
        if subprocess.run([os.path.join(b, "moectl"), "-s", sock, "status"],
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit("moed did not start")


def start(b, tmp, ranks, workers):
    sock = os.path.join(tmp, "s.sock")
    cmd = [os.path.join(b, "moed"), "-c", "/dev/null", "-s", sock, "-S", tmp,
           "-P", os.path.join(b, "plugins/.libs"), "-m", "synthetic:S1", "-w", str(workers)]
    env = dict(os.environ)
    if ranks:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_btl="self,vader",
                   MOED_CLUSTER_MODULE=os.path.join(b, "cluster/.libs/mpi.so"))
        # Open MPI binds a rank to one core when -np <= 2: a rank must be
        # free to use the cores its workers run on, as a host of its own would
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(ranks)] + cmd
    log = open(os.path.join(tmp, "log"), "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_up(b, sock, proc)
    return proc, sock


def stop(proc, ranks):
    proc.send_signal(signal.SIGUSR2 if ranks else signal.SIGTERM)
    proc.wait(timeout=60)


def delta(a, b, key):
    return (b.get(key) or 0) - (a.get(key) or 0)


def measure(b, sock, ranks, T, duration):
    before = moectl(b, sock, "cluster", "show") if ranks else None
    r = moectl(b, sock, "bench", "--clients", "1", "--tokens", str(T), "--duration",
               str(duration), "--layer", "1")["concurrent"]
    row = dict(T=T, tps=r["tokens_per_s"], p50=r["p50_us"] / 1000, err=r["errors"])
    if ranks:
        after = moectl(b, sock, "cluster", "show")
        calls = max(delta(before, after, "calls"), 1)
        row.update(calls=calls, **{k: delta(before, after, k + "_us") / calls
                                   for k in ("split", "local", "wait", "combine")})
        out = back = 0
        comp = []
        for x, y in zip(before["ranks"][1:], after["ranks"][1:]):
            out += delta(x, y, "bytes_out")
            back += delta(x, y, "bytes_in")
            comp.append(delta(x, y, "compute_us") / calls)
        row.update(bytes_out=out / calls, bytes_in=back / calls, rank_compute=comp)
    return row


def model(rows, ranks):
    """Per batch on N hosts: max(front share, slowest rank + transfer), where a
    remote rank's transfer is its bytes at the link rate plus 2 x 20 us."""
    lines = []
    for gbps in (25, 100):
        rate = gbps * 1e9 / 8
        for r in rows:
            if not r.get("rank_compute"):
                continue
            remote = max(r["rank_compute"]) if r["rank_compute"] else 0
            per_rank_bytes = (r["bytes_out"] + r["bytes_in"]) / max(len(r["rank_compute"]), 1)
            xfer = per_rank_bytes / rate * 1e6 + 40
            t = max(r["local"], remote + xfer) + r["split"] + r["combine"]
            lines.append("| %d Gb/s | %d | %d | %.0f | %.0f | %.0f | %.0f | %s |" % (
                gbps, ranks, r["T"], r["local"], remote, xfer, r["T"] / t * 1e6,
                "transfer" if xfer > remote else "compute"))
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builddir")
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--tokens", default="1,4,16,64,256,1024")
    ap.add_argument("--ranks", default="1,2,3")
    a = ap.parse_args()
    b = os.path.abspath(a.builddir)
    Ts = [int(x) for x in a.tokens.split(",")]
    ncpu = os.cpu_count() or 1
    print("# Expert parallelism on %d cores: S1, one client\n" % ncpu)
    print("| ranks | T | tokens/s | p50 ms | vs 1 process | split us | own share us | "
          "wait us | combine us | bytes out/call | bytes back/call | rank compute us |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = {}
    models = []
    for ranks in [0] + [int(x) for x in a.ranks.split(",")]:
        tmp = tempfile.mkdtemp(prefix="moed-cb.")
        workers = max(ncpu // max(ranks, 1), 1)
        proc, sock = start(b, tmp, ranks, workers)
        rows = []
        try:
            for T in Ts:
                moectl(b, sock, "bench", "--clients", "1", "--tokens", str(T), "--duration",
                       "1", "--layer", "1")          # warm the pages and the pool
                r = measure(b, sock, ranks, T, a.duration)
                rows.append(r)
                if not ranks:
                    base[T] = r["tps"]
                print("| %s | %d | %.0f | %.2f | %.2f | %s | %s | %s | %s | %s | %s | %s |" % (
                    ranks or "1 process", T, r["tps"], r["p50"], r["tps"] / base[T],
                    *(("%.0f" % r[k]) if k in r else "-" for k in
                      ("split", "local", "wait", "combine", "bytes_out", "bytes_in")),
                    " / ".join("%.0f" % c for c in r.get("rank_compute", [])) or "-"))
                sys.stdout.flush()
        finally:
            stop(proc, ranks)
            shutil.rmtree(tmp, ignore_errors=True)
        if ranks > 1:
            models += model(rows, ranks)
    print("\n## Model: N hosts, the measured compute per rank, links of 25 and 100 Gb/s\n")
    print("| link | ranks | T | front share us | slowest rank us | transfer us | tokens/s | bound by |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(models))
    total = V3_EXPERT_BYTES + V3_SCALE_BYTES
    print("\nDeepSeek-V3 routed experts in FP8: %.0f GB (+ %.1f GB scales)." %
          (V3_EXPERT_BYTES / 1e9, V3_SCALE_BYTES / 1e9))
    for host_gb, usable in ((24, 20), (512, 480)):
        n = -(-total // int(usable * 1e9))
        print("- %d GB hosts (%d GB usable for experts): %d hosts" % (host_gb, usable, n))


if __name__ == "__main__":
    main()
