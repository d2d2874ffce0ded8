"""Hardware cost models (numpy only): layer specs, profiles, cost tables.

Never imports torch, gymnasium or stable-baselines3: the cost of a policy is plain
array arithmetic on a :class:`CostTable` built once per (model, profile).
"""

from haq_rl.hardware.bismo import bismo_cost
from haq_rl.hardware.bitfusion import (
    BitFusionSchedule,
    bitfusion_cost,
    bitfusion_schedule,
    perf_factor,
)
from haq_rl.hardware.cost_table import COST_MODEL_FUNCTIONS, OBJECTIVES, CostTable
from haq_rl.hardware.layer_cost import LayerCost
from haq_rl.hardware.layer_spec import LAYER_KINDS, LayerSpec, describe
from haq_rl.hardware.lookup import lookup_costs, read_table
from haq_rl.hardware.profile import (
    HardwareProfile,
    load_profile,
    parse_profile,
    profile_names,
)
from haq_rl.hardware.proxies import bops, proxy_cost, size_bits
from haq_rl.hardware.targets import COST_MODELS, TARGET_TABLE, HardwareTarget
from haq_rl.hardware.validation import (
    TableComparison,
    compare_tables,
    pearson,
    random_policies,
    rankdata,
    relative_error,
    spearman,
)

__all__ = [
    "COST_MODELS", "COST_MODEL_FUNCTIONS", "LAYER_KINDS", "OBJECTIVES", "TARGET_TABLE",
    "BitFusionSchedule", "CostTable", "HardwareProfile", "HardwareTarget", "LayerCost", "LayerSpec", "TableComparison",
    "bismo_cost", "bitfusion_cost", "bitfusion_schedule", "bops", "compare_tables", "describe",
    "load_profile", "lookup_costs", "parse_profile", "pearson", "perf_factor", "profile_names",
    "proxy_cost", "random_policies", "rankdata", "read_table", "relative_error", "size_bits",
    "spearman",
]
