"""CostTable: every layer's cost at every (w_bits, a_bits), computed once per (model, profile).

Arrays are indexed ``[layer, w_bits-1, a_bits-1]`` for bits 1..max_bits. Looking a
policy up is then a gather and a sum, cheap enough for an RL environment's every step
and for scoring thousands of random policies at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import Any

import numpy as np

from haq_rl.errors import ConfigError, PolicyError, UnknownNameError
from haq_rl.hardware.bismo import bismo_cost
from haq_rl.hardware.bitfusion import bitfusion_cost
from haq_rl.hardware.cost_index import layer_costs
from haq_rl.hardware.layer_cost import LayerCost
from haq_rl.hardware.layer_spec import LayerSpec
from haq_rl.hardware.lookup import lookup_costs
from haq_rl.hardware.profile import HardwareProfile
from haq_rl.hardware.proxies import bops, proxy_cost, size_bits

logger = logging.getLogger(__name__)

OBJECTIVES = ("latency", "energy", "size", "bops")

CostModel = Callable[[LayerSpec, np.ndarray, np.ndarray, Mapping[str, Any]], LayerCost]

#: Per-layer cost models by profile ``model`` kind (lookup works on whole tables).
COST_MODEL_FUNCTIONS: dict[str, CostModel] = {
    "bismo": bismo_cost,
    "bitfusion": bitfusion_cost,
    "bops": proxy_cost,
    "size": proxy_cost,
}

_OBJECTIVE_ARRAYS = {"latency": "latency_ms", "energy": "energy_uj", "size": "size_bytes", "bops": "bops"}


def _shape_key(spec: LayerSpec) -> tuple:
    """Everything but the name: layers with equal keys cost the same."""
    return astuple(spec)[1:]


@dataclass(frozen=True, eq=False)
class CostTable:
    """Per-layer costs of one model on one hardware profile (see module docstring).

    Attributes: ``latency_ms``, ``cycles``, ``energy_uj`` (NaN where the model has none),
    ``size_bytes`` (weights only), ``bops`` (float arrays [L, B, B]), ``bound`` (str [L, B, B]),
    ``specs``, ``profile_name``, ``profile_sha256``, ``cost_model``, ``min_bits``, ``max_bits``.
    """

    specs: tuple[LayerSpec, ...]
    profile_name: str
    profile_sha256: str
    cost_model: str
    min_bits: int
    max_bits: int
    latency_ms: np.ndarray
    cycles: np.ndarray
    energy_uj: np.ndarray
    size_bytes: np.ndarray
    bops: np.ndarray
    bound: np.ndarray

    @classmethod
    def build(cls, specs: Sequence[LayerSpec], profile: HardwareProfile, max_bits: int = 8,
              kmeans_codebooks: bool = False) -> CostTable:
        """Evaluate ``profile``'s cost model for every layer and bits 1..max_bits."""
        if not specs:
            raise ConfigError("cannot build a cost table for a model with no quantizable layers")
        if not 1 <= max_bits <= 32:
            raise ConfigError(f"max_bits={max_bits} must be in 1..32")
        started = time.perf_counter()
        bits = np.arange(1, max_bits + 1, dtype=np.float64)
        w_grid, a_grid = bits[:, None], bits[None, :]
        shape = (len(specs), max_bits, max_bits)
        cycles, latency, energy = (np.full(shape, np.nan) for _ in range(3))
        bound = np.full(shape, "proxy", dtype=object)
        kmeans = kmeans_codebooks or bool(profile.params.get("kmeans_codebooks", False))
        size_bytes = np.stack([np.broadcast_to(size_bits(s, w_grid, kmeans) / 8, (max_bits, max_bits))
                               for s in specs])
        bops_arr = np.stack([bops(s, w_grid, a_grid) for s in specs])
        if profile.cost_model == "lookup":
            cycles, latency, energy = lookup_costs(specs, profile.params, max_bits)
            bound[:] = "measured"
        else:
            model = COST_MODEL_FUNCTIONS[profile.cost_model]
            done: dict[tuple, LayerCost] = {}
            for i, spec in enumerate(specs):
                key = _shape_key(spec)
                if key not in done:  # repeated blocks (ResNets) share one evaluation
                    done[key] = model(spec, w_grid, a_grid, profile.params)
                cost = done[key]
                cycles[i], latency[i], energy[i], bound[i] = (
                    cost.cycles, cost.latency_ms, cost.energy_uj, cost.bound)
        logger.debug("cost table %s: %d layers x %d x %d bits in %.3f s", profile.name,
                     len(specs), max_bits, max_bits, time.perf_counter() - started)
        return cls(specs=tuple(specs), profile_name=profile.name, profile_sha256=profile.sha256,
                   cost_model=profile.cost_model, min_bits=profile.min_bits, max_bits=max_bits,
                   latency_ms=latency, cycles=cycles, energy_uj=energy, size_bytes=size_bytes,
                   bops=bops_arr, bound=bound.astype(str))

    @property
    def layer_names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def kinds(self) -> list[str]:
        return [s.kind for s in self.specs]

    @property
    def num_layers(self) -> int:
        return len(self.specs)

    def has(self, objective: str) -> bool:
        """Whether this table has finite values for ``objective`` (proxies have no latency)."""
        return bool(np.isfinite(self.objective_array(objective)).any())

    def objective_array(self, objective: str) -> np.ndarray:
        if objective not in OBJECTIVES:
            raise UnknownNameError("objective", objective, OBJECTIVES)
        return getattr(self, _OBJECTIVE_ARRAYS[objective])

    def objective(self, objective: str) -> np.ndarray:
        """Array [L, B, B] of ``objective`` (latency ms, energy uJ, size bytes, bops)."""
        values = self.objective_array(objective)
        if not np.isfinite(values).any():
            usable = [o for o in OBJECTIVES if np.isfinite(self.objective_array(o)).any()]
            raise ConfigError(f"hardware profile {self.profile_name!r} (cost model {self.cost_model}) has no "
                              f"{objective}; use one of: {', '.join(usable)}")
        return values

    def policy_cost(self, w_bits: Any, a_bits: Any, objective: str = "latency") -> float | np.ndarray:
        """Total ``objective`` of a policy (arrays of length L) or of many ([P, L] -> [P])."""
        values = self.objective(objective)
        w = np.asarray(w_bits)
        a = np.asarray(a_bits)
        if w.shape != a.shape or w.ndim not in (1, 2) or w.shape[-1] != self.num_layers:
            raise PolicyError(f"policy bits must have shape [{self.num_layers}] or [P, {self.num_layers}]; "
                              f"got w {w.shape}, a {a.shape}")
        if not (np.issubdtype(w.dtype, np.integer) or np.all(w == np.round(w))) or \
                not (np.issubdtype(a.dtype, np.integer) or np.all(a == np.round(a))):
            raise PolicyError("policy bits must be integers")
        w = w.astype(np.intp)
        a = a.astype(np.intp)
        for label, arr in (("w_bits", w), ("a_bits", a)):
            if arr.size and (arr.min() < 1 or arr.max() > self.max_bits):
                raise PolicyError(f"{label} must be in 1..{self.max_bits}, got {arr.min()}..{arr.max()}")
        total = layer_costs(values, w, a).sum(axis=-1)
        return float(total) if total.ndim == 0 else total

    def uniform_cost(self, bits: int, objective: str = "latency") -> float:
        """Total ``objective`` with every layer at ``bits``/``bits``."""
        full = np.full(self.num_layers, bits)
        return float(self.policy_cost(full, full, objective))

    def cost_range(self, objective: str, min_bits: int | None = None,
                   max_bits: int | None = None) -> tuple[float, float]:
        """Cheapest and dearest possible totals with bits in [min_bits, max_bits] per layer."""
        lo = self.min_bits if min_bits is None else min_bits
        hi = self.max_bits if max_bits is None else max_bits
        window = self.objective(objective)[:, lo - 1:hi, lo - 1:hi].reshape(self.num_layers, -1)
        return float(window.min(axis=1).sum()), float(window.max(axis=1).sum())
