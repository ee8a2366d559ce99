import numpy as np
import pytest

from tfrobust import models
from tfrobust._keras import keras
from tfrobust.compression import compare_before_after, evaluate_model, factorize, lottery_ticket
from tfrobust.compression.shared import choose_rank  # a building block, tested on its own


def test_lottery_ticket_prunes_per_round_and_reports_the_baselines(small_data, fashion_test):
    x, y = small_data
    xt, yt = fashion_test[0][:128], fashion_test[1][:128]
    model = models.lenet_300_100(input_shape=(28, 28, 1))
    init = [w.copy() for w in model.get_weights()]
    res = lottery_ticket(model, x[:256], y[:256], xt, yt, rounds=1, prune_rate=0.5, epochs=1)
    assert [r["round"] for r in res.rows] == [0, 1]
    # hidden layers lose 50% of the survivors per round, the output layer 25%
    sizes = {"fc1": 784 * 300, "fc2": 300 * 100, "logits": 100 * 10}
    kept = sizes["fc1"] * 0.5 + sizes["fc2"] * 0.5 + sizes["logits"] * 0.75
    assert res.rows[1]["sparsity"] == pytest.approx(1 - kept / sum(sizes.values()), abs=1e-3)
    for row in res.rows[1:]:
        assert {"ticket", "scratch_e", "scratch_b", "scratch_b_epochs"} <= set(row)
        assert row["scratch_b_epochs"] == 2  # min(2, 1/density) * 1 epoch, rounded up
        assert 0.0 <= row["ticket"] <= 1.0
    for a, b in zip(model.get_weights(), init):  # the caller's model is untouched
        np.testing.assert_array_equal(a, b)
    assert "Scratch-B" in res.to_markdown()
    with pytest.raises(ValueError, match="prune_rate"):
        lottery_ticket(model, x, y, xt, yt, prune_rate=1.5)


def test_choose_rank_matches_the_energy_definition(rng):
    s = np.sort(rng.random(20))[::-1]
    for energy in (0.3, 0.9, 0.999, 1.0):
        k = choose_rank(s, energy)
        cum = np.cumsum(s ** 2) / np.sum(s ** 2)
        assert cum[k - 1] >= energy - 1e-9
        assert k == 1 or cum[k - 2] < energy


def test_factorization_is_exact_for_low_rank_kernels_and_shrinks_params(rng):
    inp = keras.Input((12, 12, 8))
    c = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv")(inp)
    f = keras.layers.Flatten()(c)
    d = keras.layers.Dense(64, activation="relu", name="fc")(f)
    out = keras.layers.Dense(10, name="logits")(d)
    model = keras.Model(inp, out)
    # make the conv and fc kernels rank 3 / rank 5: energy 1.0 then needs exactly that rank
    kc = model.get_layer("conv").kernel.numpy().reshape(-1, 32)
    model.get_layer("conv").kernel.assign((rng.normal(size=(kc.shape[0], 3)) @ rng.normal(size=(3, 32)))
                                          .reshape(3, 3, 8, 32).astype(np.float32))
    kf = model.get_layer("fc").kernel.numpy()
    model.get_layer("fc").kernel.assign((rng.normal(size=(kf.shape[0], 5)) @ rng.normal(size=(5, 64)))
                                        .astype(np.float32) * 0.01)
    small, report = factorize(model, energy=0.99999, min_weights=1000)
    ranks = {r["layer"]: r["rank"] for r in report.layers}
    assert ranks == {"conv": 3, "fc": 5}
    names = [layer.name for layer in small.layers]
    assert {"conv_lowrank_u", "conv_lowrank_v", "fc_lowrank_u", "fc_lowrank_v"} <= set(names)
    assert "logits" in names and report.params_after < report.params_before
    assert small.count_params() == report.params_after
    x = rng.random((4, 12, 12, 8)).astype(np.float32)
    np.testing.assert_allclose(small(x).numpy(), model(x).numpy(), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="energy"):
        factorize(model, energy=0.0)
    with pytest.raises(ValueError, match="layers"):
        factorize(model, layers=["nope"])


def test_evaluation_reports_accuracy_and_the_given_robust_eval(small_data):
    x, y = small_data[0][:64], small_data[1][:64]
    model = models.lenet_300_100()
    logits = model(x).numpy()
    res = evaluate_model(model, x, y, robust_eval_fn=lambda m, xs, ys: 0.25)
    assert res["accuracy"] == pytest.approx(np.mean(np.argmax(logits, 1) == y))
    assert res["robust_accuracy"] == 0.25
    cmp = compare_before_after(model, model, x, y, robust_eval_fn=lambda m, xs, ys: 0.5)
    assert cmp["accuracy_change"] == 0 and cmp["robust_accuracy_change"] == 0
    with pytest.raises(TypeError, match="robust_eval_fn"):
        evaluate_model(model, x, y, robust_eval_fn=3)
