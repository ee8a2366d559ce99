"""The catastrophic-overfitting guard of ``tfrobust pipeline --target=mcu``'s training."""

import numpy as np
import pytest

from tfrobust import models
from tfrobust.cli.shared import MCUSettings, OverfittingGuard, pgd_accuracy, train_guarded


def test_guard_keeps_the_best_epoch_and_flags_a_pgd_collapse():
    guard = OverfittingGuard(max_drop=0.2)
    decisions = [guard.update(r, weights=[f"w{i}"], method="fgsm_rs")
                 for i, r in enumerate((0.50, 0.62, 0.60, 0.45, 0.41))]
    # 0.45 is 17 points under the best: noise; 0.41 is 21 points under: a collapse.
    assert decisions == ["best", "best", "keep", "keep", "collapse"]
    assert guard.best == 0.62 and guard.best_weights == ["w1"]


def test_guard_does_not_switch_away_from_multi_step_pgd():
    guard = OverfittingGuard(best=0.7, best_weights=["w"])
    assert guard.update(0.1, weights=["x"], method="pgd") == "keep"
    assert guard.update(0.1, weights=["x"], method="fgsm_rs") == "collapse"
    assert guard.best_weights == ["w"]


@pytest.fixture(scope="module")
def tiny(fashion_train):
    x, y = fashion_train
    settings = MCUSettings(model="mcu_cnn", adv="fgsm_rs", eps=0.1, batch_size=64, seed=0)
    return settings, x[:256], y[:256], x[256:320], y[256:320]


def _model():
    return models.mcu_cnn((28, 28, 1), 10, width=0.25)


@pytest.mark.slow
def test_train_guarded_restores_the_best_weights_and_trains_pgd3_after_a_collapse(tiny):
    s, x, y, xg, yg = tiny
    model = _model()
    start = model.get_weights()
    # A guard that already saw 100% held-out PGD accuracy (a known-good checkpoint): the first
    # epoch's PGD accuracy is far below it, a collapse by the rule.
    guard = OverfittingGuard(best=1.0, best_weights=[w.copy() for w in start])
    history = train_guarded(s, model, x, y, xg, yg, epochs=2, lr=1e-3, guard=guard, log=lambda m: None)
    assert history[0]["method"] == "fgsm_rs" and history[0]["guard_pgd10"] < 0.8
    assert "catastrophic overfitting" in history[0]["guard"]
    assert (history[1]["method"], history[1]["steps"]) == ("pgd", 3)
    # The best weights are still the checkpoint's: they are what the model ends with.
    for got, want in zip(model.get_weights(), start):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_train_guarded_ends_with_the_weights_of_its_best_epoch(tiny):
    s, x, y, xg, yg = tiny
    model = _model()
    history = train_guarded(s, model, x, y, xg, yg, epochs=2, lr=1e-3, log=lambda m: None)
    assert [h["method"] for h in history] == ["fgsm_rs", "fgsm_rs"]
    assert not any("guard" in h for h in history)
    best = max(h["guard_pgd10"] for h in history)
    assert pgd_accuracy(model, xg, yg, s.eps, s.seed) == best
