"""BISMO: bit-serial matrix multiplication overlay (FPGA), closed-form latency and energy.

Sources: Umuroglu et al., "BISMO: A Scalable Bit-Serial Matrix Multiplication Overlay
for Reconfigurable Computing", FPL 2018, and its journal version (arXiv 1901.00370);
the open RTL EECS-NTNU/bismo. HAQ (Wang et al., CVPR 2019) runs its "edge" and "cloud"
experiments on BISMO; its authors' simulator was never released, so this model is fitted
to the one table they did publish (see ``hw_profiles/bismo-cloud.yaml`` and docs/hardware.md).

A layer is lowered to a matrix multiply: M rows of weights, K reduction, N columns
(see :class:`~haq_rl.hardware.layer_spec.LayerSpec`). The array has Dm x Dn dot-product
units, each Dk bits wide (AND + popcount), and a binary product is computed once per
pair of bit planes, so compute costs w*a passes. Fetch, execute and result stages are
double-buffered and overlap, so a layer's time is the slowest stage::

    kt = ceil(K / Dk)
    r  = Dk / mem_bits_per_cycle                        # cycles to fetch one Dk-bit row
    EX = g * Tn * kt * ceil(M/Dm) * ceil(Nt/Dn) * w * a  # bit-serial execute
    AF = g * Tn * kt * ceil(Nt * r) * a                  # activation fetch
    WF = g * Tn * kt * (ceil(M * r) + ovh * (ceil(Nt/Dn) - 1)) * w   # weights once per image
    WF = g * Tn * kt * ceil(Nt/Dn) * ceil(M * r) * w    # weight_fetch: per_tile (BISMO default)
    cycles = max(WF, AF, EX)

with conv: Tn = batch (one tile per image), Nt = H_out*W_out; linear: Tn = 1, Nt = batch;
depthwise: packed block-diagonally, g = ceil(C/Dm) blocks of M = Dm channels and
K = Dm*k*k (zeros outside the block); grouped: g groups of M = C_out/g, K = k*k*C_in/g.
``ovh`` (one cycle per right-hand tile, per bit plane, per K chunk) is the instruction
overhead that HAQ's cloud table shows.

Energy (pJ, then uJ) from per-operation and per-bit constants stated in the profile::

    E = EX * Dm*Dn*Dk * e_binop                      # AND + popcount per array bit
      + EX * (Dm + Dn) * Dk * e_sram_read            # operand bits read by the array
      + fetched_bits * (e_dram + e_sram_write)      # DRAM -> on-chip buffers
      + result_bits * e_dram                         # 32-bit results written back
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from haq_rl.hardware.layer_cost import LayerCost, bit_grid
from haq_rl.hardware.layer_spec import LayerSpec

BOUNDS = ("weight-fetch", "activation-fetch", "compute")


def _ceil(a: float, b: float) -> int:
    return int(math.ceil(a / b))


def matrix_view(spec: LayerSpec, dm: int) -> tuple[int, int, int, int, int]:
    """(g, Tn, M, K, Nt) of the lowered matrix multiply on an array with Dm rows."""
    if spec.kind == "linear":
        tn, nt = 1, spec.batch  # the batch forms the columns of one tile
    else:
        tn, nt = spec.batch, spec.n  # one right-hand tile set per image
    if spec.kind == "depthwise":
        # Pack Dm channels into a dense block-diagonal Dm x (Dm*k*k) matrix: this is how
        # HAQ's table treats depthwise layers (it reproduces their cost, see docs/hardware.md).
        return _ceil(spec.groups, dm), tn, dm, dm * spec.kernel * spec.kernel, nt
    return spec.groups, tn, spec.m, spec.k, nt


def bismo_cost(spec: LayerSpec, w_bits: np.ndarray | int, a_bits: np.ndarray | int,
               params: Mapping[str, Any]) -> LayerCost:
    """Latency (cycles, ms) and energy of ``spec`` on BISMO, broadcast over the bit arrays.

    ``params``: dm, dn, dk, clock_mhz, mem_bits_per_cycle, weight_fetch ('per_image' or
    'per_tile'), overhead_cycles, and the energy constants e_binop_pj, e_sram_read_pj_per_bit,
    e_sram_write_pj_per_bit, e_dram_pj_per_bit (formulas in the module docstring).
    """
    w, a = bit_grid(w_bits, a_bits)
    dm, dn, dk = int(params["dm"]), int(params["dn"]), int(params["dk"])
    mem = float(params["mem_bits_per_cycle"])
    ovh = float(params.get("overhead_cycles", 1))
    g, tn, m, k, nt = matrix_view(spec, dm)
    r = dk / mem
    kt = _ceil(k, dk)
    col_tiles = _ceil(nt, dn)
    scale = g * tn * kt
    ex = scale * _ceil(m, dm) * col_tiles * w * a
    af = scale * math.ceil(nt * r) * a
    if params.get("weight_fetch", "per_image") == "per_tile":
        wf = scale * col_tiles * math.ceil(m * r) * w
    else:
        wf = scale * (math.ceil(m * r) + ovh * (col_tiles - 1)) * w
    stages = np.stack([wf, af, ex])
    cycles = stages.max(axis=0)
    # Ties go to the earlier stage in BOUNDS; argmax picks the first maximum.
    bound = np.asarray(BOUNDS)[stages.argmax(axis=0)]
    latency_ms = cycles / (float(params["clock_mhz"]) * 1e3)

    weight_reads = col_tiles if params.get("weight_fetch") == "per_tile" else 1
    fetched_bits = scale * (m * dk * w * weight_reads + nt * dk * a)
    result_bits = g * tn * m * nt * 32.0
    energy_pj = (ex * dm * dn * dk * float(params["e_binop_pj"])
                 + ex * (dm + dn) * dk * float(params["e_sram_read_pj_per_bit"])
                 + fetched_bits * (float(params["e_dram_pj_per_bit"])
                                   + float(params["e_sram_write_pj_per_bit"]))
                 + result_bits * float(params["e_dram_pj_per_bit"]))
    return LayerCost(cycles=cycles, latency_ms=latency_ms, energy_uj=energy_pj * 1e-6, bound=bound)
