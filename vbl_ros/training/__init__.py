"""Training: fine-tune the descriptor on GPS triplets from bags, with an optional LIDAR side modality.

``train(config, out)`` (``vbl train``) writes a run folder and a model file in the usual format;
:class:`TrainConfig` is its configuration (``config/train.yaml``). The parts, in pipeline order:
``frames`` (frame caches from bags), ``triplets`` (positives and negatives from the geotags),
``mining`` (partial hard mining or random), ``dataset`` (tensors), ``losses`` (triplet, masked L1),
``variants`` (rgb, auxiliary, hallucination, rgb-baseline), ``checkpoint``, ``distributed``
(torchrun / DDP), ``run`` (the run folder).
"""

from vbl_ros.training.config import VARIANTS, TrainConfig
from vbl_ros.training.train import TrainResult, train

__all__ = ["VARIANTS", "TrainConfig", "TrainResult", "train"]
