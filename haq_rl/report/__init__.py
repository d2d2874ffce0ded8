"""Tables (pandas) and figures (matplotlib) of search runs, and the ``haq-rl report`` writer.

A run directory (written by :mod:`haq_rl.search`, see :mod:`haq_rl.run.layout`) loads into
a :class:`Run`; every function here accepts a :class:`Run` or a run directory path, so a
notebook can do::

    from haq_rl import report
    run = report.load_run("runs/MobileNetV2Edge-v0-ddpg-s0")
    report.policy_table(run)            # per-layer bits and costs
    report.plot_curve(run)              # a matplotlib Figure

Per-layer costs are recomputed from the layer specs and the hardware profile that
config.json records (:func:`haq_rl.run.load.cost_table_for`): no model is built.
Modules: :mod:`~haq_rl.report.tables`, :mod:`~haq_rl.report.figures`, :mod:`~haq_rl.report.front_figures`,
:mod:`~haq_rl.report.conclusions` (the plain sentences atop report.md),
:mod:`~haq_rl.report.markdown`; loading is :mod:`haq_rl.run.load`.

Figures use matplotlib's Agg backend through the object-oriented API (``Figure``, never
``pyplot``), so nothing opens a window and nothing leaks into pyplot's global state.
"""

from haq_rl.report.conclusions import conclusions
from haq_rl.report.figures import (
    KIND_COLORS,
    plot_bits,
    plot_cost_share,
    plot_curve,
)
from haq_rl.report.front_figures import plot_front, plot_pareto
from haq_rl.report.markdown import write_report
from haq_rl.report.tables import (
    best_table,
    budget_front,
    comparison_table,
    episodes,
    finetuned_points,
    kept_front,
    pareto_front,
    policy_table,
    uniform_baselines,
)
from haq_rl.run.load import Run, cost_table_for, load_run

__all__ = [
    "budget_front",
    "KIND_COLORS",
    "Run",
    "best_table",
    "comparison_table",
    "conclusions",
    "cost_table_for",
    "episodes",
    "finetuned_points",
    "kept_front",
    "load_run",
    "pareto_front",
    "plot_bits",
    "plot_cost_share",
    "plot_curve",
    "plot_front",
    "plot_pareto",
    "policy_table",
    "uniform_baselines",
    "write_report",
]
