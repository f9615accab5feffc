"""The daemon's files call one way: no two modules of daemon/ include each
other in a circle (a module is NAME.c with NAME.h; X depends on Y when X.c or
X.h includes daemon/Y.h).  Prints the cycle and exits 1 when there is one."""
import os
import re
import sys

top = sys.argv[1] if len(sys.argv) > 1 else os.environ["top_srcdir"]
d = os.path.join(top, "daemon")
inc = re.compile(r'#include "daemon/([a-z_0-9]+)\.h"')
deps = {}
for f in sorted(os.listdir(d)):
    name, ext = os.path.splitext(f)
    if ext not in (".c", ".h"):
        continue
    with open(os.path.join(d, f)) as fh:
        deps.setdefault(name, set()).update(m for m in inc.findall(fh.read()) if m != name)

state, stack = {}, []


def visit(n):
    state[n] = 1
    stack.append(n)
    for m in sorted(deps.get(n, ())):
        if state.get(m) == 1:
            print("cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            sys.exit(1)
        if m not in state:
            visit(m)
    stack.pop()
    state[n] = 2


for n in sorted(deps):
    if n not in state:
        visit(n)
print("no include cycle among %d daemon modules" % len(deps))
