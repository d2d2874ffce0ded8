"""``reward_source: predictor``: a regressor over per-layer bits fitted on supernet evaluations.

A supernet evaluation is still a forward pass over ``reward_val`` (about a second on a CPU
core), so an RL agent cannot afford thousands of episodes on it. Once-for-all networks
(Cai et al., ICLR 2020) fit an accuracy predictor on supernet evaluations of sampled
sub-networks instead; here the sub-networks are policies. The predictor costs well under a
millisecond per policy.

The samples: ``samples`` policies with uniformly drawn bits, walled to budgets drawn
uniformly between the task's minimum achievable ratio and 1, so they cover the region
every search explores, near each budget's wall. Each is evaluated on the supernet (KL and
accuracy). The samples are cached next to the supernet (``.npz``, no pickle); the fit is
cheap and deterministic, so it is redone on load.

Candidate regressors (picked by 5-fold cross-validated Spearman of the reward):

* ``noise``: ridge on each layer's quantization-noise scale ``4^-w`` and ``4^-a`` (the
  variance of a uniform quantizer's error falls 4x per bit, so an additive noise model
  of the KL, as HAWQ's second-order analysis implies, is linear in these);
* ``onehot``: ridge on one-hot widths per layer (an additive table, LIMPQ-style);
* ``boosting``: gradient-boosted trees on the raw bits (interactions between layers).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from haq_rl.cache import write_cache_entry
from haq_rl.errors import BudgetWarning, UnsafeFileError
from haq_rl.fileio import NUMPY_READ_ERRORS, open_regular
from haq_rl.supernet.train import TrainedSupernet
from haq_rl.task.evaluator import PolicyEvaluator, PolicyScores
from haq_rl.task.scoring import PolicyScorer

logger = logging.getLogger(__name__)

#: Supernet evaluations the predictor is fitted on (the issue's bound: <= 500).
PREDICTOR_SAMPLES = 200
PREDICTOR_KINDS = ("noise", "onehot", "boosting")
_FORMAT_VERSION = 1


@dataclass
class PolicySamples:
    """Evaluated policies: bits ``[n, layers]`` and their supernet scores ``[n]``."""

    w_bits: np.ndarray
    a_bits: np.ndarray
    accuracy: np.ndarray
    kl: np.ndarray


def sample_policies(scorer: PolicyScorer, count: int, seed: int, progress: bool = False) -> PolicySamples:
    """``count`` walled random policies scored by ``scorer``'s (supernet) evaluator."""
    rows_w, rows_a, accuracy, kl = [], [], [], []
    policies = itertools.islice(walled_random_policies(scorer, seed), count)
    for w, a in tqdm(policies, total=count, desc="evaluating policies for the predictor", disable=not progress,
                     leave=False):
        scores = scorer.evaluator.scores(w, a)
        rows_w.append(w)
        rows_a.append(a)
        accuracy.append(scores.accuracy)
        kl.append(scores.kl)
    return PolicySamples(np.array(rows_w), np.array(rows_a), np.array(accuracy), np.array(kl))


def walled_random_policies(scorer: PolicyScorer, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Random bits walled to random budgets, endlessly; the predictor's samples are the first
    ``n`` (one random stream), so a longer table (bench/build_benchmark_table.py) extends them."""
    rng = np.random.default_rng(seed)
    low = scorer.minimum_cost() / scorer.reference_cost
    layers = len(scorer.layer_names)
    while True:
        budget = float(rng.uniform(min(1.0, low + 0.02), 1.0))
        w = rng.integers(scorer.min_bits, scorer.max_bits + 1, layers)
        a = rng.integers(scorer.min_bits, scorer.max_bits + 1, layers)
        with warnings.catch_warnings():  # budgets near the minimum warn by design; these are samples
            warnings.simplefilter("ignore", BudgetWarning)
            w, a, _ = scorer.at_budget(budget).apply_wall(w, a)
        yield w, a


def features(kind: str, w_bits: np.ndarray, a_bits: np.ndarray, bits: range) -> np.ndarray:
    """The regressor inputs of policies ``[n, layers]`` for predictor ``kind``."""
    w = np.atleast_2d(w_bits).astype(np.float64)
    a = np.atleast_2d(a_bits).astype(np.float64)
    if kind == "noise":
        return np.hstack([4.0 ** -w, 4.0 ** -a])
    if kind == "onehot":
        levels = np.array(list(bits), dtype=np.float64)
        return np.hstack([(w[:, :, None] == levels).reshape(len(w), -1),
                          (a[:, :, None] == levels).reshape(len(a), -1)]).astype(np.float64)
    return np.hstack([w, a])


def _regressor(kind: str, seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import RidgeCV

    if kind == "boosting":
        return GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8,
                                         random_state=seed)
    return RidgeCV(alphas=np.logspace(-6, 2, 17))


class LinearRegression:
    """A fitted ridge regression as its coefficients: what ships for the benchmark tasks
    (haq_rl.supernet.tabulated), predicting exactly as the fit did without importing sklearn."""

    def __init__(self, coef: np.ndarray, intercept: float) -> None:
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = float(intercept)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_ + self.intercept_


class BitsPredictor:
    """Predicts a policy's supernet accuracy and KL from its bits (one regressor each)."""

    def __init__(self, kind: str, bits: range, seed: int = 0) -> None:
        self.kind = kind
        self.bits = bits
        self.seed = seed
        self._accuracy: Any = None
        self._kl: Any = None
        #: The lowest and highest accuracy of the samples fitted on: predictions stay within.
        self.accuracy_range = (0.0, 100.0)

    def fit(self, samples: PolicySamples) -> BitsPredictor:
        x = features(self.kind, samples.w_bits, samples.a_bits, self.bits)
        self._accuracy = _regressor(self.kind, self.seed).fit(x, samples.accuracy)
        # The bounds of an accuracy prediction: what the supernet showed on the samples. A ridge
        # over two features per layer (106 for MobileNetV2) fitted on a few hundred samples
        # extrapolates by points at policies unlike them (an agent's corners: all-8 here, all-2
        # there); clipped at 100 % only, such a policy read 100.00 beside a float 97.8.
        self.accuracy_range = (float(samples.accuracy.min()), float(samples.accuracy.max()))
        # The KL spans orders of magnitude between 8 and 2 bits: fitting its log keeps the
        # small differences between good policies, which are the ones a search must order.
        self._kl = _regressor(self.kind, self.seed).fit(x, np.log(samples.kl + 1e-6))
        return self

    def linear_parameters(self) -> dict[str, np.ndarray] | None:
        """The fitted ridge coefficients and intercepts (kinds ``noise`` and ``onehot``), or None."""
        if self.kind == "boosting":
            return None
        return {f"{name}_{part}": np.atleast_1d(getattr(model, f"{part}_")).astype(np.float64)
                for name, model in (("accuracy", self._accuracy), ("kl", self._kl)) for part in ("coef", "intercept")}

    @classmethod
    def from_linear(cls, kind: str, bits: range, parameters: dict[str, np.ndarray]) -> BitsPredictor:
        """The predictor of :meth:`linear_parameters`, with no fit (and no sklearn)."""
        predictor = cls(kind, bits)
        predictor._accuracy = LinearRegression(parameters["accuracy_coef"], parameters["accuracy_intercept"][0])
        predictor._kl = LinearRegression(parameters["kl_coef"], parameters["kl_intercept"][0])
        return predictor

    def predict(self, w_bits: np.ndarray, a_bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(accuracy, kl) predictions, one per policy row."""
        x = features(self.kind, w_bits, a_bits, self.bits)
        kl = np.maximum(np.exp(self._kl.predict(x)) - 1e-6, 0.0)
        return np.clip(self._accuracy.predict(x), *self.accuracy_range), kl


def cross_validated_spearman(kind: str, samples: PolicySamples, bits: range, metric: str, folds: int = 5,
                             seed: int = 0) -> float:
    """Spearman between held-out predictions and supernet scores of ``metric``, over ``folds``."""
    from scipy.stats import spearmanr

    order = np.random.default_rng(seed).permutation(len(samples.kl))
    predicted = np.zeros(len(order))
    for fold in range(folds):
        held = order[fold::folds]
        kept = np.setdiff1d(order, held)
        part = PolicySamples(samples.w_bits[kept], samples.a_bits[kept], samples.accuracy[kept], samples.kl[kept])
        accuracy, kl = BitsPredictor(kind, bits, seed).fit(part).predict(samples.w_bits[held], samples.a_bits[held])
        predicted[held] = accuracy if metric == "accuracy" else -kl
    truth = samples.accuracy if metric == "accuracy" else -samples.kl
    return float(spearmanr(predicted, truth).statistic)


class PredictedEvaluator:
    """The evaluator the scorer reads with ``reward_source: predictor``: scores are predictions.

    It offers what :class:`~haq_rl.task.scoring.PolicyScorer` reads of an evaluator
    (:class:`~haq_rl.task.evaluator.ScoresSource`); ``source`` is the supernet evaluator it
    was fitted on. Its row says it is not pooled: it evaluates in place.
    """

    #: No pool evaluates for it: a prediction costs less than shipping the policy.
    parallel = False

    def __init__(self, predictor: BitsPredictor, source: PolicyEvaluator | None, fit_report: dict[str, Any], *,
                 layer_names: list[str] | None = None, float_accuracy: float | None = None,
                 device: Any = None) -> None:
        # ``source`` None: fitted on shipped samples (haq_rl.supernet.tabulated), no supernet
        # loaded; the layers, float accuracy and device then come from the task.
        self.predictor = predictor
        self.source = source
        self.fit_report = fit_report
        self.layer_names = list(source.layer_names if source is not None else layer_names or [])
        self.float_accuracy = float(source.float_accuracy if source is not None else float_accuracy or 0.0)
        self.device = source.device if source is not None else device
        self.evaluations = 0
        self.cache_hits = 0
        self.eval_seconds = 0.0

    def scores(self, w_bits: np.ndarray, a_bits: np.ndarray) -> PolicyScores:
        started = time.perf_counter()
        accuracy, kl = self.predictor.predict(np.asarray(w_bits), np.asarray(a_bits))
        self.evaluations += 1
        self.eval_seconds += time.perf_counter() - started
        return PolicyScores(accuracy=float(accuracy[0]), kl=float(kl[0]))

    def accuracy(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        return self.scores(w_bits, a_bits).accuracy

    def prefetch(self, policies: Any) -> None:
        """Nothing to prefetch: a prediction costs microseconds."""


def predictor_evaluator(task: Any, source: PolicyEvaluator, trained: TrainedSupernet, *,
                        samples: int = PREDICTOR_SAMPLES, seed: int = 0, progress: bool = True) -> PredictedEvaluator:
    """Fit (or reload the samples of) the task's predictor; the best kind by cross-validation."""
    data = load_or_sample(task, source, trained, samples, seed, progress)
    bits = range(task.spec.min_bits, task.spec.max_bits + 1)
    report = fit_report(data, bits, task.spec.reward_metric, seed)
    predictor = BitsPredictor(report["kind"], bits, seed).fit(data)
    return PredictedEvaluator(predictor, source, report)


def fit_report(data: PolicySamples, bits: range, metric: str, seed: int = 0) -> dict[str, Any]:
    """The cross-validated Spearman of every kind on ``data`` and the best ``kind``."""
    report = {kind: cross_validated_spearman(kind, data, bits, metric, seed=seed) for kind in PREDICTOR_KINDS}
    best = max(report, key=lambda kind: report[kind])
    logger.info("predictor fitted on %d supernet evaluations: cross-validated Spearman %s; using %s",
                len(data.kl), ", ".join(f"{k} {v:.3f}" for k, v in report.items()), best)
    return {"kind": best, "cv_spearman": report, "samples": len(data.kl)}


def load_or_sample(task: Any, source: PolicyEvaluator, trained: TrainedSupernet, samples: int, seed: int,
                   progress: bool = False) -> PolicySamples:
    """The task's cached supernet evaluations of sampled policies, evaluated now if missing."""
    path = _samples_path(task, trained, samples, seed)
    data = _read_samples(path, len(source.layer_names), samples)
    if data is None:
        data = sample_policies(PolicyScorer.from_task(task, evaluator=source), samples, seed, progress)
        write_cache_entry(path, lambda stream: np.savez(stream, w_bits=data.w_bits, a_bits=data.a_bits,
                                                        accuracy=data.accuracy, kl=data.kl,
                                                        format_version=np.array(_FORMAT_VERSION)))
    return data


def onehot_table(samples: PolicySamples, bits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The additive KL table of a ridge fit on one-hot widths: ``(weight, activation)``, each
    ``[layer, width]`` (a width no sample took gets its neighbours' fit through the ridge prior)."""
    from sklearn.linear_model import RidgeCV

    x = features("onehot", samples.w_bits, samples.a_bits, range(bits[0], bits[-1] + 1))
    model = RidgeCV(alphas=np.logspace(-6, 2, 17)).fit(x, samples.kl)
    layers, width = samples.w_bits.shape[1], len(bits)
    coefficients = np.asarray(model.coef_).reshape(2, layers, width)
    return coefficients[0], coefficients[1]


def _samples_path(task: Any, trained: TrainedSupernet, samples: int, seed: int) -> Path:
    """Next to the supernet, named by what the samples depend on (:func:`samples_key`)."""
    digest = samples_key(task.spec, trained.path.name, samples, seed)
    return trained.path.with_name(trained.path.name.replace(".pt", f".samples-{digest}.npz"))


def samples_key(spec: Any, supernet_name: str, samples: int, seed: int) -> str:
    """What a task's predictor samples depend on: its supernet's cache name (model, weights,
    data, recipe) and the cost table whose wall shapes them (hardware, objective). The
    shipped samples (:mod:`haq_rl.supernet.tabulated`) are found by this key."""
    key = {"supernet": supernet_name, "hardware": spec.hardware, "objective": spec.objective,
           "extra_budgets": spec.extra_budgets, "bn": spec.bn_recalibration, "samples": samples, "seed": seed,
           "format": _FORMAT_VERSION}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _read_samples(path: Path, layers: int, count: int) -> PolicySamples | None:
    """The cached samples at ``path`` if whole and of the shapes and ranges sampling writes
    (``count`` rows of ``layers`` bits, finite scores), else None with a warning: a torn,
    emptied or crafted file is evaluated again, never fitted."""
    if not path.is_file():
        return None
    try:
        with open_regular(path, "rb") as stream, np.load(stream, allow_pickle=False) as data:
            samples = PolicySamples(data["w_bits"], data["a_bits"], data["accuracy"], data["kl"])
    except (*NUMPY_READ_ERRORS, UnsafeFileError) as error:
        logger.warning("ignoring unreadable predictor samples %s (%s): evaluating them again", path, error)
        return None
    problem = _samples_problem(samples, layers, count)
    if problem:
        logger.warning("ignoring predictor samples %s (%s): evaluating them again", path, problem)
        return None
    return samples


def _samples_problem(samples: PolicySamples, layers: int, count: int) -> str | None:
    shape = (count, layers)
    if samples.w_bits.shape != shape or samples.a_bits.shape != shape:
        return f"bits of shape {samples.w_bits.shape}, not {shape}"
    if samples.accuracy.shape != (count,) or samples.kl.shape != (count,):
        return f"scores of shape {samples.accuracy.shape}, not ({count},)"
    for name in ("w_bits", "a_bits", "accuracy", "kl"):
        values = getattr(samples, name)
        if values.dtype.kind not in "iuf" or not np.isfinite(values).all():
            return f"{name} holds values that are not finite numbers"
    if not ((1 <= samples.w_bits) & (samples.w_bits <= 8) & (1 <= samples.a_bits) & (samples.a_bits <= 8)).all():
        return "bits outside 1..8"
    return None
