"""End-to-end latency: a policy's exported model timed whole in onnxruntime on this CPU,
beside the float model and the uniform 8/8 policy (the budget's reference).

The measured cost table predicts a policy's latency as a sum of layers each timed alone; what
ships is the whole graph: the layers, the Quantize/DequantizeLinear between float and INT8
layers, and the rest of the model. Here every model is written as ``haq-rl export --runtime
ort`` writes it (the ``portable`` form the table times) and run whole at the table's batch on
one thread. ``rounds`` rounds visit every model in turn, so a slow moment of a shared machine
hits them all; each model's time is the median over rounds of its median of ``repeats`` runs,
with the low-high spread over rounds, and its ratio to the 8/8 model of the same round (a
budget is a ratio of the 8/8 cost) likewise.

The weights and ranges do not change the time, so the graphs come from the post-training
model calibrated on one small batch (:data:`TIMING_CALIBRATION_IMAGES`): the full calibration
took 20 s a policy for MobileNetV2 on one core, the timing a second.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from haq_rl.errors import ConfigError
from haq_rl.export.onnx_qdq import DEFAULT_OPSET, build_model, require_onnx
from haq_rl.export.qdq_graph import torch_export
from haq_rl.export.runtimes import runtime_named
from haq_rl.finetune.policies import uniform_policy
from haq_rl.hardware.ort_timing import median_ms, pinned_session
from haq_rl.hardware.targets import MEASURED_TARGETS, measured_target
from haq_rl.quant import QuantPolicy
from haq_rl.task.budget import REFERENCE_BITS, is_within_budget
from haq_rl.task.task import Task

#: Names of the two models every measurement times beside the policies.
FLOAT_NAME, REFERENCE_NAME = "float", "uniform 8/8"
#: The export form the measured table times (``haq_rl.export.integer_form.ISAS``).
TIMED_ISA = "portable"
#: Images the timed graphs are calibrated on (one batch): enough for a valid graph.
TIMING_CALIBRATION_IMAGES = 16


@dataclass(frozen=True)
class EndToEndLatency:
    """One model's measured latency (ms) and its ratio to the 8/8 model, medians over rounds
    with the lowest and highest round; ``fastest_ratio``: its fastest round over the 8/8
    model's fastest (the least disturbed, which tracks the table best: docs/hardware.md)."""

    measured_ms: float
    measured_low_ms: float
    measured_high_ms: float
    ratio: float
    ratio_low: float
    ratio_high: float
    fastest_ratio: float

    def within(self, budget: float) -> bool:
        """Whether the median measured ratio meets ``budget`` (the wall's tolerance): the
        typical run, not the luckiest, so a policy is never called within on one fast round."""
        return is_within_budget(self.ratio, budget)


def measures_end_to_end(task: Task) -> bool:
    """Whether the task's hardware is a target this machine can time (``ort-cpu``)."""
    return measured_target(task.spec.hardware) is not None


def time_end_to_end(task: Task, policies: Mapping[str, QuantPolicy], *, rounds: int = 3, repeats: int = 20,
                    warmup: int = 3) -> dict[str, EndToEndLatency]:
    """Export and time ``policies`` (name -> policy; float layers as w_bits 32) whole, with the
    float model (:data:`FLOAT_NAME`) and uniform 8/8 (:data:`REFERENCE_NAME`) in the same rounds.

    Returns name -> :class:`EndToEndLatency` for every model timed, the two extra ones included.
    """
    target = measured_target(task.spec.hardware)
    if target is None:
        raise ConfigError(f"end-to-end latency is measured on {', '.join(MEASURED_TARGETS)}; this task's hardware "
                          f"is {task.spec.hardware!r}, whose cost table is the only latency there is")
    if rounds < 1 or repeats < 1 or warmup < 0:
        raise ConfigError(f"rounds={rounds} (>= 1), repeats={repeats} (>= 1), warmup={warmup} (>= 0)")
    onnx, onnxruntime = require_onnx()
    graphs = {FLOAT_NAME: _float_graph(task), **_policy_graphs(onnx, task, policies)}
    # One session per distinct graph: a policy under two names (the searched one is also the
    # search's best) is timed once and reads the same numbers.
    distinct = {id(data): data for data in graphs.values()}
    sessions = {key: pinned_session(onnxruntime, data) for key, data in distinct.items()}
    feed = _images(task, target.batch)
    times: dict[int, list[float]] = {key: [] for key in sessions}
    for _ in range(rounds):
        for key, session in sessions.items():
            times[key].append(median_ms(session, {session.get_inputs()[0].name: feed}, repeats, warmup))
    reference = times[id(graphs[REFERENCE_NAME])]
    result = {}
    for name, data in graphs.items():
        values = times[id(data)]
        ratios = [mine / base for mine, base in zip(values, reference, strict=True)]
        result[name] = EndToEndLatency(statistics.median(values), min(values), max(values),
                                       statistics.median(ratios), min(ratios), max(ratios),
                                       min(values) / min(reference))
    return result


def end_to_end_fields(task: Task, policies: Mapping[str, QuantPolicy], *, rounds: int = 3,
                      repeats: int = 20) -> dict[str, dict[str, Any]]:
    """The rows' measured fields (``haq_rl.finetune.compare.EndToEndTimer``): name -> latency in ms
    and ratio to 8/8 with their spreads, and for a latency budget whether the measured ratio
    meets it (a policy the table admitted but the whole model breaks is flagged, False). Empty
    for a task whose hardware this machine cannot time."""
    if not measures_end_to_end(task):
        return {}
    timed = time_end_to_end(task, policies, rounds=rounds, repeats=repeats)
    latency_budget = task.spec.objective == "latency"
    return {name: {"measured_latency_ms": latency.measured_ms,
                   "measured_latency_spread_ms": [latency.measured_low_ms, latency.measured_high_ms],
                   "measured_latency_ratio": latency.ratio,
                   "measured_latency_ratio_spread": [latency.ratio_low, latency.ratio_high],
                   "measured_fastest_ratio": latency.fastest_ratio,
                   "measured_within_budget": latency.within(task.spec.budget) if latency_budget else None}
            for name, latency in timed.items()}


def _policy_graphs(onnx: Any, task: Task, policies: Mapping[str, QuantPolicy]) -> dict[str, bytes]:
    runtime = runtime_named("ort")
    task = _timing_task(task)
    wanted = {REFERENCE_NAME: uniform_policy(task, REFERENCE_BITS), **policies}
    graphs: dict[QuantPolicy, bytes] = {}
    by_name = {}
    for name, policy in wanted.items():
        if policy not in graphs:  # the same policy under two names is timed once
            built = build_model(onnx, task, policy, None, runtime, TIMED_ISA, DEFAULT_OPSET, warn=False)
            graphs[policy] = built.model.SerializeToString()
        by_name[name] = graphs[policy]
    return by_name


def _timing_task(task: Task) -> Task:
    """``task`` calibrating on :data:`TIMING_CALIBRATION_IMAGES` images (a shallow copy)."""
    spec = dataclasses.replace(task.spec, calibration_batches=1,
                               reward_batch_size=min(task.spec.reward_batch_size, TIMING_CALIBRATION_IMAGES))
    return dataclasses.replace(task, spec=spec)


def _float_graph(task: Task) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    model = task.model.cpu().eval()
    example = task.splits.test.tensors[0][:1]
    with torch.no_grad():
        torch_export(model, example, buffer, DEFAULT_OPSET)
    return buffer.getvalue()


def _images(task: Task, batch: int) -> np.ndarray:
    """``batch`` test images (repeated when the split holds fewer): what the model is timed on."""
    images = task.splits.test.tensors[0].numpy().astype(np.float32)
    return np.resize(images, (batch, *images.shape[1:])) if len(images) < batch else images[:batch]
