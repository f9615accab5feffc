"""pytest suite of the Python client (python/moed) against the real moed.

tests/python/client.sh starts moed on the v3 case of tests/ref/make_cases.py
([limits] max_tokens_per_request = 1000, max_inflight_per_conn = 4) and passes
MOED_SOCKET, MOED_TEST_CASE and MOECTL.  Expected numbers come from numpy
(tests/ref/moe_ref.py run on the checkpoint's weights), never from moed; the
bf16 path is checked against the fp32 path and against numpy's rounding.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

import moed

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ref"))
import moe_ref as ref  # noqa: E402

CASE = os.environ["MOED_TEST_CASE"]
SOCK = os.environ["MOED_SOCKET"]
# the v3 case's routing (tests/ref/make_cases.py good_cases)
CFG = dict(scoring="sigmoid", top_k=4, n_group=4, topk_group=2, normalise=True, scale=2.5)
LAYERS = (1, 2)


@pytest.fixture(scope="module")
def weights():
    t = ref.read_safetensors(os.path.join(CASE, "model.safetensors"))
    return {L: ref.deepseek_layer(t, L, 16) for L in LAYERS}


@pytest.fixture(scope="module")
def xb(weights):
    """bf16 inputs whose routes are clear of ties in both layers (so rounding
    inside the layer cannot flip an expert)."""
    x = np.load(os.path.join(CASE, "x_1000.npy"))
    bits = moed.f32_to_bf16(x)
    xf = moed.bf16_to_f32(bits)
    ok = np.ones(len(x), bool)
    for lw in weights.values():
        ok &= ref.boundary_gap(xf, lw["gate"], lw["bias"], CFG) > 1e-3
    assert ok.sum() >= 24
    return bits[ok][:24]


@pytest.fixture
def client():
    with moed.Client() as c:
        yield c


def scale_of(y):
    return max(float(np.abs(y).max()), 1e-30)


def test_bf16_helpers_match_numpy_rounding():
    x = np.array([1.0, 1.00390625, 1.005859375, -2.5e-3, 3.0e38, 65504.0], np.float32)
    b = moed.f32_to_bf16(x)
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1.0); 1 + 1.5*2^-8 rounds up
    assert b[0] == 0x3F80 and b[1] == 0x3F80 and b[2] == 0x3F81
    back = moed.bf16_to_f32(b)
    assert np.all(np.abs(back - x) <= np.abs(x) * 2.0 ** -8)
    assert np.array_equal(b, ref.to_bf16_bits(x))


def test_default_path_from_environment(client):
    assert client.path == SOCK
    assert client.server_version


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("T", (1, 7, 1000))
def test_infer_f32_matches_numpy(client, layer, T):
    x = np.load(os.path.join(CASE, "x_%d.npy" % T))
    y_ref = np.load(os.path.join(CASE, "y_%d_%d.npy" % (layer, T)))
    y = client.infer(layer, x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - y_ref).max() <= 1e-5 * scale_of(y_ref)


def test_infer_one_token_1d(client):
    x = np.load(os.path.join(CASE, "x_1.npy"))
    y = client.infer(1, x[0])
    assert y.shape == (x.shape[1],)
    assert np.abs(y - np.load(os.path.join(CASE, "y_1_1.npy"))[0]).max() <= 1e-5 * scale_of(y)


@pytest.mark.parametrize("layer", LAYERS)
def test_bf16_in_out_within_rounding_of_numpy(client, weights, xb, layer):
    y_ref, _, _ = ref.moe_forward(moed.bf16_to_f32(xb), weights[layer], CFG)
    yb = client.infer(layer, xb, dtype="bf16")
    assert yb.dtype == np.uint16 and yb.shape == xb.shape
    y = moed.bf16_to_f32(yb)
    s = scale_of(y_ref)
    assert np.all(np.abs(y - y_ref) <= np.abs(y_ref) * 2.0 ** -8 + 1e-5 * s)


@pytest.mark.parametrize("layer", LAYERS)
def test_bf16_equals_fp32_path(client, xb, layer):
    y32 = client.infer(layer, moed.bf16_to_f32(xb))
    # bf16 in, fp32 out: the very same fp32 inputs reach the layer
    assert np.array_equal(client.infer(layer, xb, dtype="bf16", output_dtype="f32"), y32)
    # bf16 out: the fp32 output rounded to nearest even (numpy's rounding)
    assert np.array_equal(client.infer(layer, xb, dtype="bf16"), ref.to_bf16_bits(y32))
    # fp32 in, bf16 out
    assert np.array_equal(client.infer(layer, moed.bf16_to_f32(xb), output_dtype="bf16"),
                          ref.to_bf16_bits(y32))
    # a float array sent as bf16 is rounded by the client first
    assert np.array_equal(client.infer(layer, moed.bf16_to_f32(xb) * np.float32(1 + 2 ** -10),
                                       dtype="bf16"), client.infer(layer, xb, dtype="bf16"))


@pytest.mark.parametrize("layer", LAYERS)
def test_route_matches_numpy(client, weights, layer):
    x = np.load(os.path.join(CASE, "x_7.npy"))
    e, w = client.route(layer, x)
    assert e.dtype == np.int32 and w.dtype == np.float32 and e.shape == (7, 4)
    assert np.array_equal(e, np.load(os.path.join(CASE, "experts_%d_7.npy" % layer)))
    w_ref = np.load(os.path.join(CASE, "weights_%d_7.npy" % layer))
    assert np.abs(w - w_ref).max() <= 1e-6 * np.abs(w_ref).max()


@pytest.mark.parametrize("dtype", (None, "bf16"))
def test_return_routes_equals_route(client, xb, dtype):
    x = xb if dtype else moed.bf16_to_f32(xb)
    for layer in LAYERS:
        y, e, w = client.infer(layer, x, dtype=dtype, return_routes=True)
        e2, w2 = client.route(layer, x, dtype=dtype)
        assert np.array_equal(e, e2) and np.array_equal(w, w2)
        assert np.array_equal(y, client.infer(layer, x, dtype=dtype))


def test_infer_many_in_order(client, xb):
    x7 = np.load(os.path.join(CASE, "x_7.npy"))
    items = [(1, x7), (2, x7[:3]), (1, x7[2:5]), (2, x7)] * 3      # > the daemon's window of 4
    got = client.infer_many(items, window=4)
    for (layer, x), y in zip(items, got):
        assert np.array_equal(y, client.infer(layer, x))
    got = client.infer_many([(1, xb), (2, xb)], dtype="bf16", return_routes=True)
    assert np.array_equal(got[1][1], client.route(2, xb, dtype="bf16")[0])


def test_infer_many_raises_first_refusal_and_stays_usable(client):
    x = np.load(os.path.join(CASE, "x_7.npy"))
    with pytest.raises(moed.Error) as ei:
        client.infer_many([(1, x), (0, x), (2, x), (9, x)])
    assert ei.value.status == "NOT_FOUND" and "layer 0" in ei.value.message
    assert client.infer(1, x).shape == x.shape


def moectl_json(*args):
    out = subprocess.run([os.environ["MOECTL"], "--json"] + list(args), check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_model_like_moectl(client):
    m, j = client.model(), moectl_json("model")
    assert {k: m[k] for k in j} == pytest.approx(j)
    assert m["hidden_size"] == 64 and m["moe_layers"] == [1, 2] and m["dtype"] == "F32"


def test_status_like_moectl(client):
    s, j = client.status(), moectl_json("status")
    assert set(j) <= set(s)
    for k in ("version", "pid", "workers", "health", "plugins"):
        assert s[k] == j[k], k
    assert s["model"]["source"] == CASE and s["health"] == "ok"
    assert {p["name"] for p in s["plugins"]} >= {"sigmoid-norm", "cpu"}


def test_stats_like_moectl(client):
    x = np.load(os.path.join(CASE, "x_7.npy"))
    before = client.stats(layer=2)["layers"][0]["tokens"]
    client.infer(2, x)
    s, j = client.stats(layer=2), moectl_json("stats", "--layer", "2")
    assert [l["layer"] for l in s["layers"]] == [2]
    assert s["layers"][0]["tokens"] == before + 7
    assert set(s["layers"][0]) == set(j["layers"][0])
    assert s["layers"][0]["load"] == j["layers"][0]["load"]
    assert [l["layer"] for l in client.stats()["layers"]] == [1, 2]


@pytest.mark.parametrize("call, status, needle", [
    (lambda c, x: c.infer(0, x), "NOT_FOUND", "dense layer"),
    (lambda c, x: c.route(7, x), "NOT_FOUND", "not in this model"),
    (lambda c, x: c.infer(1, x[:, :32]), "INVALID_ARGUMENT", "hidden size 32"),
    (lambda c, x: c.infer(1, np.full((2, 64), np.nan, np.float32)), "INVALID_ARGUMENT",
     "not finite"),
    (lambda c, x: c.infer(1, np.full((2, 64), 0x7F80, np.uint16), dtype="bf16"),
     "INVALID_ARGUMENT", "hidden[0][0] is not finite"),
    (lambda c, x: moed._wire.check(c._call(_raw_infer(c, x, output_dtype=4))),
     "INVALID_ARGUMENT", "output_dtype I32"),
    (lambda c, x: moed._wire.check(c._call(_raw_hidden(c, x, 3, x[:, :32].tobytes()))),
     "INVALID_ARGUMENT", "tensor dtype F16, want F32 or BF16"),
    (lambda c, x: moed._wire.check(c._call(_raw_hidden(c, x, 2, x.tobytes()))),
     "INVALID_ARGUMENT", "448 elements (896 bytes) but carries 1792 bytes"),
    (lambda c, x: c.infer(1, np.zeros((1001, 64), np.float32)), "RESOURCE_EXHAUSTED",
     "1001 tokens exceed max_tokens_per_request 1000"),
    (lambda c, x: c.stats(layer=0), None, None),
])
def test_refusals(client, call, status, needle):
    x = np.load(os.path.join(CASE, "x_7.npy"))
    if status is None:          # stats of a dense layer: an answer or NOT_FOUND, never a hang
        try:
            call(client, x)
        except moed.Error as e:
            assert e.status == "NOT_FOUND"
        return
    with pytest.raises(moed.Error) as ei:
        call(client, x)
    assert not isinstance(ei.value, moed.Unavailable)
    assert ei.value.status == status and needle in ei.value.message, ei.value
    assert client.infer(1, x).shape == x.shape      # the connection still serves


def _raw_hidden(c, x, dtype, data):
    """An infer request whose hidden tensor claims `dtype` over raw `data`."""
    req, _ = moed._wire.infer_request(c._id(), 1, x)
    req.infer.hidden.dtype = dtype
    req.infer.hidden.data = data
    return req


def _raw_infer(c, x, output_dtype):
    req, _ = moed._wire.infer_request(c._id(), 1, x)
    req.infer.output_dtype = output_dtype
    return req


def test_argument_errors_before_sending(client):
    x = np.load(os.path.join(CASE, "x_7.npy"))
    with pytest.raises(TypeError):
        client.infer(1, moed.f32_to_bf16(x))            # uint16 without dtype="bf16"
    with pytest.raises(TypeError):
        client.infer(1, x.astype(np.int32))
    with pytest.raises(ValueError):
        client.infer(1, x, dtype="f16")
    with pytest.raises(ValueError):
        client.infer(1, x.reshape(7, 8, 8))


def test_unavailable_no_socket(tmp_path):
    with pytest.raises(moed.Unavailable) as ei:
        moed.Client(str(tmp_path / "none.sock"))
    assert ei.value.status == "UNAVAILABLE" and "none.sock" in ei.value.message
    assert isinstance(ei.value, moed.Error)


def fake_server(path, behaviour):
    """A socket that accepts one connection and then: 'close' at once, 'hang'
    (reads, never answers), 'garbage' (answers a frame that is no Response)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        if behaviour == "garbage":
            conn.recv(65536)
            conn.sendall(b"\x00\x00\x00\x03\xff\xff\xff")
        if behaviour == "hang":
            conn.recv(65536)
            threading.Event().wait(3)
        conn.close()
        srv.close()
    threading.Thread(target=run, daemon=True).start()


@pytest.mark.parametrize("behaviour, needles", [("close", ("closed", "lost")),
                                                ("hang", ("no answer",)),
                                                ("garbage", ("protocol error",))])
def test_unavailable_broken_peers(tmp_path, behaviour, needles):
    path = str(tmp_path / "fake.sock")
    fake_server(path, behaviour)
    with pytest.raises(moed.Unavailable) as ei:
        moed.Client(path, timeout=0.5)
    assert any(n in ei.value.message for n in needles), ei.value.message


def test_unavailable_when_moed_goes_away(tmp_path):
    """A daemon that stops mid-session: the next call raises Unavailable (no
    retry), and the call after reconnects to a daemon that is back."""
    path = str(tmp_path / "moed.sock")
    cmd = [os.environ["MOED"], "--socket", path, "--plugin-dir", os.environ["MOED_TEST_PLUGIN_DIR"],
           "--state-dir", str(tmp_path), "--config", "/dev/null", "--model", "synthetic:S0"]

    def start():
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                return p, moed.Client(path)
            except moed.Unavailable:
                threading.Event().wait(0.1)
        p.kill()
        pytest.fail("synthetic:S0 moed did not start")
    p, c = start()
    try:
        layer = c.model()["moe_layers"][0]
        H = c.model()["hidden_size"]
        assert c.infer(layer, np.zeros((1, H), np.float32)).shape == (1, H)
        p.terminate()
        p.wait(30)
        with pytest.raises(moed.Unavailable):
            c.infer(layer, np.zeros((1, H), np.float32))
        with pytest.raises(moed.Unavailable):
            c.status()                  # no socket now: reconnecting fails too
        p, c2 = start()
        c2.close()
        assert c.status()["health"] == "ok"     # reconnected on the next call
    finally:
        c.close()
        p.terminate()
        p.wait(30)


# ---- moed.aio ----

def test_aio_all_methods(xb):
    x7 = np.load(os.path.join(CASE, "x_7.npy"))

    async def main():
        async with moed.aio.Client(max_inflight=4) as c:     # the daemon's limit here
            ys = await asyncio.gather(*(c.infer(L, x7) for L in (1, 2, 1, 2, 1, 2)))
            e, w = await c.route(1, xb, dtype="bf16")
            y, e2, w2 = await c.infer(1, xb, dtype="bf16", return_routes=True)
            many = await c.infer_many([(1, x7), (2, x7[:2])], window=1)
            with pytest.raises(moed.Error) as ei:
                await c.infer(0, x7)
            return ys, (e, w), (y, e2, w2), many, ei.value, await c.status(), \
                await c.model(), await c.stats(1)
    ys, (e, w), (y, e2, w2), many, err, st, m, s = asyncio.run(main())
    for L, got in zip((1, 2, 1, 2, 1, 2), ys):
        y_ref = np.load(os.path.join(CASE, "y_%d_7.npy" % L))
        assert np.abs(got - y_ref).max() <= 1e-5 * scale_of(y_ref)
    assert np.array_equal(e, e2) and np.array_equal(w, w2)
    with moed.Client() as c:
        assert np.array_equal(y, c.infer(1, xb, dtype="bf16"))
        assert np.array_equal(many[1], c.infer(2, x7[:2]))
        assert m == c.model()
    assert err.status == "NOT_FOUND"
    assert st["health"] == "ok" and s["layers"][0]["layer"] == 1


def test_aio_unavailable(tmp_path):
    async def main(path, timeout=60):
        async with moed.aio.Client(path, timeout=timeout):
            pass
    with pytest.raises(moed.Unavailable):
        asyncio.run(main(str(tmp_path / "none.sock")))
    path = str(tmp_path / "fake.sock")
    fake_server(path, "hang")
    with pytest.raises(moed.Unavailable) as ei:
        asyncio.run(main(path, timeout=0.5))
    assert "no answer" in ei.value.message
