"""The bit-width supernet: trained once per task, it scores any policy without retraining.

* :class:`BitSupernet` (``model.py``): a model whose layers switch between widths, the
  latent weights shared and one learned step per layer and width;
* :func:`train_supernet` (``train.py``): sandwich-rule training with in-place
  distillation, cached in ``$HAQ_RL_CACHE/supernet`` and resumable;
* :class:`SupernetConfig` (``config.py``): the training recipe, the ``reward_options`` of
  the supernet and predictor reward sources (their rows: :mod:`haq_rl.task.sources`).

See docs/supernet.md.
"""

from haq_rl.quant.switchable import bit_choices
from haq_rl.supernet.config import SupernetConfig
from haq_rl.supernet.model import BitSupernet
from haq_rl.supernet.train import TrainedSupernet, build_supernet, train_supernet

__all__ = ["BitSupernet", "SupernetConfig", "TrainedSupernet", "bit_choices", "build_supernet", "train_supernet"]
