"""Every cost model is monotone non-decreasing in weight bits and in activation bits."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from haq_rl.hardware import COST_MODEL_FUNCTIONS, LayerSpec, bops, load_profile, size_bits

BITS = np.arange(1, 9, dtype=float)
PROFILES = {name: load_profile(name) for name in ("bismo-edge", "bismo-cloud", "bitfusion")}


@st.composite
def layer_specs(draw):
    kind = draw(st.sampled_from(["conv", "depthwise", "grouped", "linear"]))
    batch = draw(st.sampled_from([1, 2, 16]))
    if kind == "linear":
        cin, cout = draw(st.integers(1, 2048)), draw(st.integers(1, 2048))
        return LayerSpec("fc", "linear", cin, cout, 1, 1, 1, 1, 1, 1, 1, batch)
    k = draw(st.sampled_from([1, 3, 5, 7]))
    s = draw(st.sampled_from([1, 2]))
    h = draw(st.integers(k, 112))
    out = (h + 2 * (k // 2) - k) // s + 1
    if kind == "depthwise":
        c = draw(st.integers(1, 512))
        return LayerSpec("dw", kind, c, c, k, s, c, h, h, out, out, batch)
    groups = draw(st.sampled_from([2, 4])) if kind == "grouped" else 1
    cin = groups * draw(st.integers(1, 128))
    cout = groups * draw(st.integers(1, 128))
    return LayerSpec("c", kind, cin, cout, k, s, groups, h, h, out, out, batch)


def _monotone(x: np.ndarray) -> bool:
    tol = 1e-9 * np.abs(x).max()
    return bool((np.diff(x, axis=0) >= -tol).all() and (np.diff(x, axis=1) >= -tol).all())


@settings(max_examples=40, deadline=None)
@given(spec=layer_specs())
def test_models_monotone(spec):
    for profile in PROFILES.values():
        cost = COST_MODEL_FUNCTIONS[profile.cost_model](spec, BITS[:, None], BITS[None, :], profile.params)
        assert _monotone(cost.cycles), (profile.name, spec)
        assert _monotone(cost.latency_ms), (profile.name, spec)
        assert _monotone(cost.energy_uj), (profile.name, spec)
    assert _monotone(bops(spec, BITS[:, None], BITS[None, :]))
    assert (np.diff(size_bits(spec, BITS, kmeans_codebooks=True)) > 0).all()
