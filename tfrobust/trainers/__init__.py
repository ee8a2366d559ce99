"""Training through ``model.fit``: adversarial, proactive and feedback training, distillation.

Trainers are ``keras.Model`` subclasses wrapping a user model and overriding ``train_step`` /
``test_step``, so ``compile``, ``fit``, ``evaluate``, callbacks and ``tf.distribute`` strategies
work as usual; the wrapped model (``trainer.model``) is what gets saved. Augmentations (mixup,
random erasing, label smoothing) are batch functions for ``tf.data``; adaptive gradient clipping is
a trainer option (``agc_clipping``) and a pure function. The losses the trainers use live in
:mod:`tfrobust.losses`; what the round-based loops measure, in :mod:`tfrobust.evaluation`.
"""

from tfrobust.trainers._adversarial import AdversarialTrainer
from tfrobust.trainers._agc import adaptive_clip_gradients, unitwise_norm
from tfrobust.trainers._augment import (
    label_smoothing_fn,
    mixup,
    mixup_fn,
    random_erasing,
    random_erasing_fn,
    sample_beta,
    smooth_labels,
)
from tfrobust.trainers._base import Trainer
from tfrobust.trainers._distill import Distiller
from tfrobust.trainers._proactive import AttackSpec, FeedbackLearning, ProactiveDefense

__all__ = [
    "AdversarialTrainer",
    "AttackSpec",
    "Distiller",
    "FeedbackLearning",
    "ProactiveDefense",
    "Trainer",
    "adaptive_clip_gradients",
    "label_smoothing_fn",
    "mixup",
    "mixup_fn",
    "random_erasing",
    "random_erasing_fn",
    "sample_beta",
    "smooth_labels",
    "unitwise_norm",
]
