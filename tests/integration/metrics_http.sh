#!/bin/bash
# [metrics] listen: /metrics (0.0.4, and OpenMetrics on Accept) and
# /api/stats serve the same counters as `moectl metrics` and `moectl --json
# stats`, current at request time; non-loopback addresses are refused unless
# allow_remote; unknown paths and methods are refused; scrapes in a tight loop
# while infers run leave every infer answered.  Then the live page in headless
# Chromium: one row per layer, and it changes after traffic; the screenshot is
# kept as metrics-page.png in the build directory.
. "$top_srcdir/tests/lib.sh"
PY=${PYTHON3:-/usr/bin/python3}

printf '[metrics]\nlisten = 0.0.0.0:0\n' >"$TMP/remote.conf"
expect_fail 1 "not a loopback address" "$MOED" --check-config --config "$TMP/remote.conf" \
	--plugin-dir "$MOED_TEST_PLUGIN_DIR"
printf '[metrics]\nlisten = 10.1.2.3:9464\n' >"$TMP/remote2.conf"
expect_fail 1 "allow_remote" "$MOED" --check-config --config "$TMP/remote2.conf" \
	--plugin-dir "$MOED_TEST_PLUGIN_DIR"
printf '[metrics]\nlisten = 0.0.0.0:0\nallow_remote = yes\n' >"$TMP/allowed.conf"
"$MOED" --check-config --config "$TMP/allowed.conf" --plugin-dir "$MOED_TEST_PLUGIN_DIR" \
	>/dev/null 2>&1 && ok "allow_remote = yes accepts 0.0.0.0" || fail "allow_remote refused"
printf '[metrics]\nlisten = 127.0.0.1\n' >"$TMP/bad.conf"
expect_fail 1 "HOST:PORT" "$MOED" --check-config --config "$TMP/bad.conf" \
	--plugin-dir "$MOED_TEST_PLUGIN_DIR"

printf '[metrics]\nlisten = 127.0.0.1:0\n' >"$TMP/moed.conf"
"$MOED" --socket "$SOCK" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --state-dir "$TMP" \
	--config "$TMP/moed.conf" --model synthetic:S0 >"$TMP/moed.log" 2>&1 &
MOED_PID=$!
for _ in $(seq 1 300); do
	"$MOECTL" status >/dev/null 2>&1 && break
	kill -0 "$MOED_PID" 2>/dev/null || break
	sleep 0.1
done
if grep -q "without libmicrohttpd" "$TMP/moed.log"; then
	skip "moed was built without libmicrohttpd (Debian: libmicrohttpd-dev)"
fi
PORT=$(sed -n "s/.*metrics: serving .* (port \([0-9]*\)).*/\1/p" "$TMP/moed.log")
[ -n "$PORT" ] || { cat "$TMP/moed.log"; fail "no port in the log"; finish; }
URL="http://127.0.0.1:$PORT"
ok "listening on $URL"

for i in 1 2 3 4; do
	"$MOECTL" infer --layer 2 --random 9 --seed $i >/dev/null || fail "infer $i"
done
"$MOECTL" --json stats >"$TMP/stats.json" || fail "moectl --json stats"
"$MOECTL" metrics >"$TMP/moectl.prom" || fail "moectl metrics"
$PY - "$URL" "$TMP/stats.json" "$TMP/moectl.prom" <<'PY' && ok "/metrics and /api/stats equal moectl's" || fail "http content"
import json, sys, urllib.request, urllib.error
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om

url, want, prom = sys.argv[1], json.load(open(sys.argv[2])), open(sys.argv[3]).read()
def get(path, accept=None, method="GET"):
    req = urllib.request.Request(url + path, method=method)
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers.get("Content-Type"), r.read().decode()
def experts(text, parse=text_string_to_metric_families):
    return {tuple(sorted(s.labels.items())): s.value for f in parse(text) for s in f.samples
            if s.name == "moed_expert_tokens_total"}

ctype, got = get("/api/stats")
assert ctype.startswith("application/json"), ctype
got = json.loads(got)
for a, b in zip(got["layers"], want["layers"]):
    assert a == b, (a, b)
assert len(got["layers"]) == len(want["layers"]) == 3
ctype, text = get("/metrics")
assert ctype.startswith("text/plain; version=0.0.4"), ctype
assert experts(text) == experts(prom) and len(experts(text)) == 48
assert sum(experts(text).values()) == 4 * 9 * 4          # 36 tokens, top-4
ctype, text = get("/metrics", "application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
assert ctype.startswith("application/openmetrics-text"), ctype
assert text.endswith("# EOF\n") and experts(text, om) == experts(prom)
ctype, page = get("/")
assert ctype.startswith("text/html") and "/api/stats" in page
assert "http://" not in page.replace("http://www.w3.org/2000/svg", ""), "the page loads nothing from elsewhere"
for path, code, method in (("/nope", 404, "GET"), ("/metrics", 405, "POST")):
    try:
        get(path, method=method)
        raise AssertionError(path)
    except urllib.error.HTTPError as e:
        assert e.code == code, (path, e.code)
print("api/stats layers equal, %d expert series" % len(experts(prom)))
PY

# current at request time: one more infer shows at once
"$MOECTL" infer --layer 1 --random 5 --seed 77 >/dev/null || fail "infer"
$PY - "$URL" <<'PY' && ok "values are current" || fail "values not current"
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/api/stats", timeout=10))
assert s["layers"][0]["tokens"] == 5 and sum(s["layers"][0]["load"]) == 20, s["layers"][0]
PY

# scrapes in a loop beside infers: every infer answered, moed still serving
$PY - "$URL" "$MOECTL" <<'PY' && ok "infers answered while scraping" || fail "infers while scraping"
import subprocess, sys, threading, time, urllib.request
url, moectl = sys.argv[1], sys.argv[2]
stop, scrapes = False, [0]
def scrape():
    while not stop:
        urllib.request.urlopen(url + "/metrics", timeout=10).read()
        scrapes[0] += 1
t = threading.Thread(target=scrape)
t.start()
lat = []
for i in range(30):
    t0 = time.monotonic()
    subprocess.run([moectl, "infer", "--layer", "3", "--random", "4", "--seed", str(i)],
                   check=True, stdout=subprocess.DEVNULL)
    lat.append(time.monotonic() - t0)
stop = True
t.join()
lat.sort()
print("30 infers during %d scrapes; moectl infer p50 %.1f ms, max %.1f ms" %
      (scrapes[0], lat[15] * 1e3, lat[-1] * 1e3))
assert scrapes[0] > 0
PY

# the page in headless Chromium
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
	echo "chromium not installed (Debian: chromium): the page is not rendered"
else
	dom() {
		timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --user-data-dir="$TMP/chr" \
			--virtual-time-budget=4000 --dump-dom "$URL/" 2>"$TMP/chromium.err"
	}
	dom >"$TMP/before.html" || fail "chromium --dump-dom: $(tail -3 "$TMP/chromium.err")"
	"$MOECTL" infer --layer 3 --random 30 --seed 5 >/dev/null || fail "infer"
	dom >"$TMP/after.html" || fail "chromium --dump-dom (after)"
	$PY - "$TMP/before.html" "$TMP/after.html" <<'PY' && ok "the page draws one row per layer and follows traffic" || fail "page"
import re, sys
def rows(path):
    html = open(path).read()
    r = {int(m.group(1)): int(m.group(2)) for m in
         re.finditer(r'class="layer" id="layer-\d+" data-layer="(\d+)" data-tokens="(\d+)"', html)}
    return r, html.count("<rect"), html
b, rb, _ = rows(sys.argv[1])
a, ra, html = rows(sys.argv[2])
assert sorted(b) == [1, 2, 3] and sorted(a) == [1, 2, 3], (b, a)
assert a[3] == b[3] + 30, (b, a)
assert ra > 0, ra
assert ("%d tokens" % a[3]) in html
assert "sigmoid-norm" in html and "p99" in html
print("rows %s -> %s, heatmap cells %d -> %d" % (b, a, rb, ra))
PY
	SHOT="${top_builddir:-.}/metrics-page.png"
	timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --user-data-dir="$TMP/chr" \
		--virtual-time-budget=4000 --window-size=1280,720 --screenshot="$SHOT" "$URL/" \
		2>>"$TMP/chromium.err" >/dev/null
	[ -s "$SHOT" ] && ok "screenshot kept as $SHOT" || fail "no screenshot"
fi
stop_moed
finish
