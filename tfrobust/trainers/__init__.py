"""Training through ``model.fit``: adversarial, proactive and feedback training, distillation.

Trainers are ``keras.Model`` subclasses wrapping a user model and overriding ``train_step`` /
``test_step``, so ``compile``, ``fit``, ``evaluate``, callbacks and ``tf.distribute`` strategies
work as usual; the wrapped model (``trainer.model``) is what gets saved. Augmentations (mixup,
random erasing, label smoothing) are batch functions for ``tf.data``; adaptive gradient clipping is
a trainer option (``agc_clipping``) and a pure function.
"""

from tfrobust.trainers._adversarial import AdversarialTrainer, kl_divergence
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
from tfrobust.trainers._distill import Distiller, distillation_loss, soft_targets
from tfrobust.trainers._proactive import (
    AttackSpec,
    FeedbackLearning,
    ProactiveDefense,
    accuracy_under,
    attack_dataset,
    inequality,
    minimal_perturbation,
)

__all__ = [
    "AdversarialTrainer",
    "AttackSpec",
    "Distiller",
    "FeedbackLearning",
    "ProactiveDefense",
    "Trainer",
    "accuracy_under",
    "adaptive_clip_gradients",
    "attack_dataset",
    "distillation_loss",
    "inequality",
    "kl_divergence",
    "label_smoothing_fn",
    "minimal_perturbation",
    "mixup",
    "mixup_fn",
    "random_erasing",
    "random_erasing_fn",
    "sample_beta",
    "smooth_labels",
    "soft_targets",
    "unitwise_norm",
]
