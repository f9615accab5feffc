"""Multi-client attacks for tests/integration/hostile_*.sh (issue 13), built on
rawclient.py's hand-made frames.  Usage: hostile.py SOCKET SCENARIO [ARGS];
prints what it saw, one line per finding, and exits non-zero with the reason
when the daemon misbehaved.  Every socket has a timeout: a daemon that stops
answering fails the scenario instead of hanging it."""
import sys

if __name__ == "__main__":
    sys.exit("no scenarios yet")
