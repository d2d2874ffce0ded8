"""Policy evaluations in parallel workers: local processes or Ray actors.

Each worker holds its own copy of the search's :class:`~haq_rl.task.evaluator.PolicyEvaluator`
(the model, the reward batches and the calibrated quantizers, shipped once when the pool
opens), on its own GPU when the search runs on CUDA. A pool evaluates a batch of policies
and returns their scores in input order; the evaluator memoises them as if it had
evaluated them itself (``PolicyEvaluator.pool``, ``PolicyEvaluator.prefetch``), so every
search method keeps its logic and its episodes.csv rows. See docs/scaling.md.
"""

from haq_rl.parallel.base import BACKENDS, EvaluationPool, WorkerError, check_backend, import_ray
from haq_rl.parallel.pool import attached_pool, open_pool

__all__ = ["BACKENDS", "EvaluationPool", "WorkerError", "attached_pool", "check_backend", "import_ray",
           "open_pool"]
