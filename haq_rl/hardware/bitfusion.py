"""BitFusion: bit-level dynamically composable accelerator (ASIC), tiled latency and energy.

Source: Sharma et al., "Bit Fusion: Bit-Level Dynamically Composable Architecture for
Accelerating Deep Neural Networks", ISCA 2018, and its public simulator
(hsharma35/bitfusion: ``accelerator.py`` compute cycles, ``optimizer.py`` tiling search).
Constants (45 nm, 500 MHz, buffers, DRAM interface, energies) come from the profile
``hw_profiles/bitfusion.yaml``, which quotes the paper's configuration.

Array: ``rows`` (16) inputs x ``cols`` (32) outputs of fusion units built from 2-bit
BitBricks; 2/4/8-bit operands fuse, so the speed-up over 8x8 bits is::

    pf = floor(8 / max(a, 2)) * floor(8 / max(w, 2))      # 3, 5, 6, 7 bits: no extra speed-up

Per tile (b images, oh x ow outputs, ic inputs, oc outputs)::

    compute  = b * ceil(oc/32) * oh*ow * k*k * ceil(ic / (16 pf))        # direct conv
    compute  = b * oh*ow * ceil(oc/32) * ceil(k*k*ic / (16 pf))         # im2col
    wgt bits = k*k*ic * oc * w
    act bits = (k + (ow-1)s) * (k + (oh-1)s) * ic * b * a              # im2col: oh*ow*k*k*ic*b*a
    out bits = oh*ow * oc * b * 32                                      # 32-bit partial sums

Tiles are powers of two (clipped to the layer) over batch, output rows/cols (square
tiles), input and output channels; channel tiles narrower than the array (fewer than 16 inputs or 32
outputs) are skipped since they idle rows/columns for the same cycles; every order of
the three loop groups (pixels =
batch x rows x cols, input channels, output channels) is searched. Walking the loops
from the innermost out, a buffer keeps reusing its data across a loop that does not
index it for as long as everything inside fits in half of the (double-buffered) buffer,
exactly as the public simulator's "promote" rule. A tiling is feasible when each tile
fits in half of its buffer. Then::

    cycles = compute + max(0, middle DRAM bits / bw - compute) + (first tile loads + last tile store) / bw

Energy follows the simulator's accounting (``optimizer.py`` ``get_stats_fast``,
``stats.py`` ``get_energy``)::

    energy = compute * E_core                       # per compute cycle, any precision
           + sum over wbuf/ibuf/obuf of (writes * pJ_wr + reads * pJ_rd)   # per bit
           + DRAM bits * E_dram

Every DRAM fill is a buffer write and every drain a buffer read. The array's inner loops
are input-, output- or weight-stationary, chosen as the simulator does by a bit-weighted
proxy over the padded loop lengths (is = ceil(oc/32)*32, os = k*k * ceil(ic/16pf)*16pf,
ws = pixels); the stationary operand is read once per tile, the other two once per MAC,
and every partial-sum read comes with a write. Outputs and partial sums are 32 bits
everywhere, in the buffers and on DRAM, as in the simulator (``oprec = 32``): a layer's
output traffic does not shrink with its bits, which is why networks with large feature
maps and few weights (MobileNetV2, ResNet-8 at 28 px) save at most ~2x energy at 2/2
while weight-dominated ones (ResNet-18) save ~4x (docs/hardware.md).

Deviations from the public simulator, on purpose:

- Layers with fewer than 16 input channels per group run as im2col (the paper runs the
  first layer that way).
- Grouped and depthwise convolutions: the simulator has none. A grouped conv is run as
  its ``groups`` independent convolutions one after another (costs add up). A depthwise
  conv is therefore C independent single-channel convolutions, each in im2col form so
  its k*k taps fill the 16 array rows; only one of the 32 output columns is busy, which
  is the array's real weakness on depthwise layers.
- Weight, output and buffer bits are the true sizes (no padding of K*K*C to 16*pf nor
  of C_out to 32): padding would make memory traffic non-monotone in bits, and it is an
  on-chip layout detail, not DRAM traffic.
- Bits below ``min_bits`` (2) are costed as 2 bits.
- Partial sums are written out and read back only when the input channels are split over
  tiles; the simulator also "fills" every output tile from DRAM on its first visit,
  reading sums that are still zero, which no accelerator needs to do.
- Energy is reported for the most frugal schedule; the simulator reports the energy of
  its fastest one (ties broken by energy), which can rise when bits fall.
- No leakage, as in the simulator (it computes leakage but leaves it out of the total).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import numpy as np

from haq_rl.hardware.layer_cost import LayerCost, bit_grid
from haq_rl.hardware.layer_spec import LayerSpec

# Which loop groups index which buffer: pixels (batch, rows, cols), input and output channels.
_LOOPS = ("pix", "ic", "oc")
_DEPENDS = {
    "pix": {"act": True, "wgt": False, "out": True},
    "ic": {"act": True, "wgt": True, "out": False},
    "oc": {"act": False, "wgt": True, "out": True},
}
_ORDERS = tuple(permutations(_LOOPS))  # innermost first
_BREAKDOWN = ("core", "wbuf", "ibuf", "obuf", "dram")
_BUFFERS = (("wgt", "wbuf"), ("act", "ibuf"), ("out", "obuf"))


@dataclass(frozen=True)
class BitFusionSchedule:
    """Per-bit-pair results (arrays broadcast like the bits asked for).

    ``cycles``, ``compute_cycles``, ``stall_cycles`` (cycles - compute: waiting for DRAM,
    first loads and last stores included), ``dram_bits`` and ``memory_bound`` (DRAM
    traffic outlasts compute) describe the fastest schedule; ``energy_uj`` and ``energy_breakdown_uj`` (core, wbuf, ibuf, obuf, dram)
    the most energy-frugal one.
    """

    cycles: np.ndarray
    compute_cycles: np.ndarray
    stall_cycles: np.ndarray
    dram_bits: np.ndarray
    memory_bound: np.ndarray
    energy_uj: np.ndarray
    energy_breakdown_uj: dict[str, np.ndarray]


def perf_factor(w_bits: np.ndarray, a_bits: np.ndarray, pmax: int = 8, pmin: int = 2) -> np.ndarray:
    """Fused multipliers per fusion unit: floor(pmax/max(a,pmin)) * floor(pmax/max(w,pmin))."""
    a = np.maximum(np.asarray(a_bits), pmin)
    w = np.maximum(np.asarray(w_bits), pmin)
    return np.floor(pmax / a) * np.floor(pmax / w)


def _tiles(dim: int) -> np.ndarray:
    """Powers of two up to the first one >= dim, clipped to dim."""
    return np.unique(np.minimum(2 ** np.arange(int(math.ceil(math.log2(dim))) + 1), dim))


def _conv_view(spec: LayerSpec) -> tuple[int, int, int, int, int, int, int, int]:
    """(groups, batch, k, stride, out_h, out_w, ic, oc) of one group's convolution."""
    if spec.kind == "linear":
        return 1, spec.batch, 1, 1, 1, 1, spec.in_channels, spec.out_channels
    return (spec.groups, spec.batch, spec.kernel, spec.stride, spec.out_h, spec.out_w,
            spec.in_channels // spec.groups, spec.out_channels // spec.groups)


def bitfusion_schedule(spec: LayerSpec, w_bits: np.ndarray | int, a_bits: np.ndarray | int,
                       params: Mapping[str, Any]) -> BitFusionSchedule:
    """Search tilings and loop orders of ``spec`` for every (w, a) pair; see module docstring."""
    w_in, a_in = bit_grid(w_bits, a_bits)
    pmin, pmax = int(params.get("min_bits", 2)), int(params.get("max_bits", 8))
    w_all = np.clip(w_in, pmin, pmax).ravel()
    a_all = np.clip(a_in, pmin, pmax).ravel()
    pairs, inverse = np.unique(np.stack([w_all, a_all], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    w = pairs[:, 0][None, :]
    a = pairs[:, 1][None, :]
    pf = perf_factor(w, a, pmax, pmin)

    rows, cols = int(params["rows"]), int(params["cols"])
    half = {ns: float(params[f"{ns}_buffer_kib"]) * 1024 * 8 / 2 for ns in ("wgt", "act", "out")}
    groups, batch, k, s, out_h, out_w, ic_all, oc_all = _conv_view(spec)
    im2col = ic_all < rows

    # Candidate tilings (column vectors [T, 1]); square spatial tiles keep the search small.
    tb, tsp, tic, toc = np.meshgrid(_tiles(batch), _tiles(max(out_h, out_w)), _tiles(ic_all),
                                    _tiles(oc_all), indexing="ij")
    tb, tsp, tic, toc = (x.reshape(-1, 1).astype(np.float64) for x in (tb, tsp, tic, toc))
    # Drop tilings that overflow a buffer even at the fewest bits: they never fit.
    sp_h, sp_w = np.minimum(tsp, out_h), np.minimum(tsp, out_w)
    act_min = (sp_h * sp_w * k * k if im2col else (k + (sp_w - 1) * s) * (k + (sp_h - 1) * s)) * tic * tb * pmin
    keep = ((k * k * tic * toc * pmin <= half["wgt"]) & (act_min <= half["act"])
            & (tb * sp_h * sp_w * toc * 32 <= half["out"]))
    # Channel tiles narrower than the array leave rows/columns idle for the same cycles.
    keep &= (toc >= min(oc_all, cols)) & (im2col | (tic >= min(ic_all, rows)))
    keep = keep.ravel()
    if not keep.any():
        raise ValueError(f"BitFusion: no tiling of layer {spec.name!r} fits the buffers")
    tb, tsp, tic, toc = (x[keep] for x in (tb, tsp, tic, toc))
    oh, ow = np.minimum(tsp, out_h), np.minimum(tsp, out_w)
    n_pix = np.ceil(batch / tb) * np.ceil(out_h / oh) * np.ceil(out_w / ow)
    n_ic, n_oc = np.ceil(ic_all / tic), np.ceil(oc_all / toc)
    n_tiles = n_pix * n_ic * n_oc
    pixels = tb * oh * ow
    kkic = k * k * tic

    # Tile sizes in bits, [T, P].
    wgt = kkic * toc * w
    if im2col:
        act = pixels * kkic * a
        compute = n_tiles * pixels * np.ceil(toc / cols) * np.ceil(kkic / (rows * pf))
    else:
        act = (k + (ow - 1) * s) * (k + (oh - 1) * s) * tic * tb * a
        compute = n_tiles * pixels * np.ceil(toc / cols) * k * k * np.ceil(tic / (rows * pf))
    out = np.broadcast_to(pixels * toc * 32.0, compute.shape)
    out_once = float(batch * out_h * out_w * oc_all * 32)  # every output written exactly once
    feasible = (wgt <= half["wgt"]) & (act <= half["act"]) & (out <= half["out"])

    # Buffer accesses of the inner loops, as the simulator's get_stats_fast: it picks input-,
    # output- or weight-stationary by a bit-weighted proxy over the padded loop lengths
    # (is = oc, os = k*k*ic, ws = pixels), then counts the stationary operand once per
    # tile and the other two once per MAC (outputs read and written at 32 bits).
    macs_tile = kkic * toc * pixels
    is_loop = np.ceil(toc / cols) * cols
    os_loop = (np.ceil(kkic / (rows * pf)) * rows * pf if im2col
               else np.ceil(tic / (rows * pf)) * rows * pf * k * k)
    ws_loop = pixels
    proxy_is = os_loop * ws_loop * (a + is_loop * (w + 32.0))
    proxy_os = is_loop * ws_loop * (32.0 + os_loop * (a + w))
    proxy_ws = os_loop * is_loop * (w + ws_loop * (a + 32.0))
    choose_is = proxy_is <= np.minimum(proxy_os, proxy_ws)
    choose_os = ~choose_is & (proxy_os <= proxy_ws)
    choose_ws = ~choose_is & ~choose_os
    inner_act = np.where(choose_is, kkic * pixels * a, macs_tile * a)
    inner_wgt = np.where(choose_ws, kkic * toc * w, macs_tile * w)
    inner_out = np.where(choose_os, toc * pixels * 32.0, macs_tile * 32.0) + 0 * a
    shape = compute.shape
    fields = {
        "wgt": wgt, "act": act, "out": out, "compute": compute,
        "pix": n_pix, "ic": n_ic, "oc": n_oc,
        "inner_act": inner_act * n_tiles, "inner_wgt": inner_wgt * n_tiles, "inner_out": inner_out * n_tiles,
    }
    consts = _Consts(params, half, out_once)

    # Search: every loop order over every feasible tiling, for every bit pair at once.
    best_cycles = np.full(shape, np.inf)
    best_energy = np.full(shape, np.inf)
    order_fast = np.zeros(shape, dtype=np.intp)
    order_lean = np.zeros(shape, dtype=np.intp)
    for index, order in enumerate(_ORDERS):
        result = _evaluate(fields, order, consts, breakdown=False)
        cycles = np.where(feasible, result["cycles"], np.inf)
        energy = np.where(feasible, result["energy"], np.inf)
        faster = cycles < best_cycles
        best_cycles = np.where(faster, cycles, best_cycles)
        order_fast = np.where(faster, index, order_fast)
        leaner = energy < best_energy
        best_energy = np.where(leaner, energy, best_energy)
        order_lean = np.where(leaner, index, order_lean)
    if not np.isfinite(best_cycles).any(axis=0).all():
        raise ValueError(f"BitFusion: no tiling of layer {spec.name!r} fits the buffers")

    # Fastest and leanest (tiling, order) for each bit pair, re-evaluated in detail.
    cols_idx = np.arange(shape[1])
    fast = _evaluate_chosen(fields, shape, best_cycles.argmin(axis=0), order_fast, cols_idx, consts)
    lean = _evaluate_chosen(fields, shape, best_energy.argmin(axis=0), order_lean, cols_idx, consts)

    def spread(x: np.ndarray) -> np.ndarray:
        # Groups run one after another: every count scales with them.
        return groups * np.asarray(x, dtype=np.float64)[inverse].reshape(w_in.shape)

    return BitFusionSchedule(
        cycles=spread(fast["cycles"]),
        compute_cycles=spread(fast["compute"]),
        stall_cycles=spread(fast["cycles"] - fast["compute"]),
        memory_bound=spread(fast["memory_bound"]) > 0,
        dram_bits=spread(fast["dram_bits"]),
        energy_uj=spread(lean["energy"]) * 1e-6,
        energy_breakdown_uj={name: spread(lean[name]) * 1e-6 for name in _BREAKDOWN},
    )


class _Consts:
    """Constants of one schedule search (buffer halves, bandwidth, energies)."""

    def __init__(self, params: Mapping[str, Any], half: dict[str, float], out_once: float) -> None:
        self.half = half
        self.out_once = out_once
        self.bw = float(params["dram_bits_per_cycle"])
        self.e_core = float(params["core_pj_per_cycle"])
        self.e_dram = float(params["dram_pj_per_bit"])
        self.e_rd = {ns: float(params[f"{buf}_read_pj_per_bit"]) for ns, buf in _BUFFERS}
        self.e_wr = {ns: float(params[f"{buf}_write_pj_per_bit"]) for ns, buf in _BUFFERS}


def _evaluate(f: Mapping[str, np.ndarray], order: tuple[str, ...], c: _Consts,
              breakdown: bool) -> dict[str, np.ndarray]:
    """Cycles and energy of tilings ``f`` under one loop order (innermost first)."""
    traffic = {ns: f[ns] for ns in ("wgt", "act", "out")}
    promote = {ns: np.ones(np.shape(f["compute"]), dtype=bool) for ns in traffic}
    for loop in order:
        n = f[loop]
        for ns in traffic:
            if _DEPENDS[loop][ns]:
                traffic[ns] = traffic[ns] * n
                promote[ns] = promote[ns] & (traffic[ns] <= c.half[ns])
            else:
                # Reused across this loop while the data inside still fits.
                traffic[ns] = np.where(promote[ns], traffic[ns], traffic[ns] * n)
    # Partial sums go out and come back in only when input channels are split.
    out_back = np.maximum(traffic["out"] - c.out_once, 0.0)
    dram = traffic["wgt"] + traffic["act"] + traffic["out"] + out_back
    # Only the first tiles' loads and the last output tile's store are not hidden behind
    # compute by double buffering (the simulator exposes whole resident blocks, which
    # can make more bits faster; tiles grow with bits, so this stays monotone).
    first_last = f["wgt"] + f["act"] + f["out"]
    middle = np.ceil(np.maximum(dram - first_last, 0.0) / c.bw)
    compute = f["compute"]
    cycles = compute + np.maximum(0.0, middle - compute) + np.ceil(first_last / c.bw)
    parts = {
        "core": compute * c.e_core,
        "wbuf": traffic["wgt"] * c.e_wr["wgt"] + f["inner_wgt"] * c.e_rd["wgt"],
        "ibuf": traffic["act"] * c.e_wr["act"] + f["inner_act"] * c.e_rd["act"],
        # DRAM fills are buffer writes and drains buffer reads; the array reads and writes
        # each partial sum it accumulates (inner_out counts one of each).
        "obuf": out_back * c.e_wr["out"] + traffic["out"] * c.e_rd["out"]
                + f["inner_out"] * (c.e_wr["out"] + c.e_rd["out"]),
        "dram": dram * c.e_dram,
    }
    result = {"cycles": cycles, "energy": sum(parts.values())}
    if breakdown:
        result.update(parts, dram_bits=dram, compute=compute + 0 * cycles, memory_bound=middle > compute)
    return result


def _evaluate_chosen(f: Mapping[str, np.ndarray], shape: tuple[int, int], tiling: np.ndarray,
                     order_index: np.ndarray, cols_idx: np.ndarray, c: _Consts) -> dict[str, np.ndarray]:
    """Detailed results of one chosen (tiling, order) per bit pair (column)."""
    chosen = {key: np.broadcast_to(value, shape)[tiling, cols_idx] for key, value in f.items()}
    order_of = order_index[tiling, cols_idx]
    out: dict[str, np.ndarray] = {}
    for index, order in enumerate(_ORDERS):
        mask = order_of == index
        if not mask.any():
            continue
        result = _evaluate(chosen, order, c, breakdown=True)
        for key, value in result.items():
            out.setdefault(key, np.zeros(len(cols_idx), dtype=np.asarray(value).dtype))
            out[key] = np.where(mask, value, out[key])
    return out


def bitfusion_cost(spec: LayerSpec, w_bits: np.ndarray | int, a_bits: np.ndarray | int,
                   params: Mapping[str, Any]) -> LayerCost:
    """Latency (cycles, ms), energy and bound of ``spec`` on BitFusion (module docstring)."""
    sched = bitfusion_schedule(spec, w_bits, a_bits, params)
    bound = np.where(sched.memory_bound, "memory", "compute")
    latency_ms = sched.cycles / (float(params["clock_mhz"]) * 1e3)
    return LayerCost(cycles=sched.cycles, latency_ms=latency_ms, energy_uj=sched.energy_uj,
                     bound=bound)
