"""Record sd_notify datagrams: bind a Unix datagram socket at PATH and append
every message received to OUT (one message per line, newlines inside a
message shown as '|'), until killed."""
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(out, "a", buffering=1) as f:
    print("listening", file=f)
    while True:
        data = s.recv(65536).decode(errors="replace").strip()
        f.write(data.replace("\n", "|") + "\n")
