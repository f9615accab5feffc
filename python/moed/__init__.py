"""moed: a Python client for the moed Mixture-of-Experts daemon.

    import moed
    with moed.Client() as c:                 # $MOED_SOCKET, else /run/moed.sock
        y = c.infer(layer, x)                # x: float32 [T, H]
        yb = c.infer(layer, xb, dtype="bf16")   # xb: bf16 bits, uint16 [T, H]
        experts, weights = c.route(layer, x)

moed.aio.Client is the asyncio twin.  Refusals raise moed.Error (.status,
.message); an unreachable daemon raises moed.Unavailable.  The protocol is
moed-protocol(7); moed_pb2 is generated from proto/moed.proto at build time.
"""
# the generated moed_pb2 lives in the build tree, the sources in the source
# tree: let the package span both when they differ (an installed copy has one)
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from .errors import Error, Unavailable          # noqa: E402
from .client import Client                      # noqa: E402
from . import aio                               # noqa: E402
from ._wire import bf16_to_f32, f32_to_bf16     # noqa: E402

__all__ = ["Client", "Error", "Unavailable", "aio", "bf16_to_f32", "f32_to_bf16"]
