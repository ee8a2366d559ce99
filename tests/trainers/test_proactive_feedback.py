import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks
from tfrobust._keras import keras
from tfrobust.evaluation import inequality, minimal_perturbation
from tfrobust.trainers import AttackSpec, FeedbackLearning, ProactiveDefense


@pytest.fixture(scope="module")
def test_split(fashion_test):
    return fashion_test[0][:96], fashion_test[1][:96]


def _compiled(tiny_model, seed=0):
    model = tiny_model(seed)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class CountFits:
    def __init__(self, model):
        self.calls = 0
        original = model.fit

        def fit(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        model.fit = fit


def test_proactive_defense_reports_each_round_and_resumes_from_its_checkpoint(
        tiny_model, tiny_data, test_split, tmp_path):
    x, y = tiny_data
    kwargs = dict(attack=AttackSpec("fgsm", eps=0.1), holdout_attack={"name": "pgd", "eps": 0.1, "steps": 2},
                  batch_size=64, directory=tmp_path / "run")
    first = ProactiveDefense(_compiled(tiny_model), rounds=1, **kwargs).run(x, y, *test_split)
    assert [r["round"] for r in first["rounds"]] == [0, 1]
    for row in first["rounds"]:
        for key in ("clean_accuracy", "attack_accuracy", "holdout_accuracy"):
            assert 0.0 <= row[key] <= 1.0
        assert row["holdout_accuracy"] <= row["clean_accuracy"]
    assert first["holdout_attack"].startswith("PGD-2")
    # a fresh model in the same directory: finished rounds are not retrained, the next one is
    model = _compiled(tiny_model, seed=5)
    counter = CountFits(model)
    loop = ProactiveDefense(model, rounds=2, **kwargs)
    second = loop.run(x, y, *test_split)
    assert counter.calls == 1 and [r["round"] for r in second["rounds"]] == [0, 1, 2]
    assert second["rounds"][:2] == first["rounds"]


def test_minimal_perturbation_bisection_brackets_the_flip(tiny_model, tiny_data):
    x, y = tiny_data[0][:32], tiny_data[1][:32]
    model = _compiled(tiny_model)
    model.fit(tiny_data[0], tiny_data[1], batch_size=32, epochs=3, verbose=0)
    eps_max, steps = 0.3, 8
    d = minimal_perturbation(model, x, y, eps_max=eps_max, method="fgsm", search_steps=steps)
    pred = np.argmax(model.predict(x, verbose=0), axis=1)
    assert np.all(d[pred != y] == 0.0) and np.all((d >= 0) & (d <= eps_max))
    tol = eps_max / 2**steps
    checked = 0
    for i in np.flatnonzero((pred == y) & (d < eps_max)):
        def label_at(e, i=i):
            x_adv = attacks.fgsm(model, x[i:i + 1], y[i:i + 1], eps=float(e))
            return int(np.argmax(model(x_adv).numpy()))

        assert label_at(d[i]) != y[i]
        assert label_at(d[i] - tol) == y[i]  # the lower end of the final bisection bracket
        checked += 1
    assert checked >= 3
    grid = minimal_perturbation(model, x, y, eps_max=eps_max, method="pgd", search_steps=3, pgd_steps=3)
    assert np.all(np.isin(np.round(grid / (eps_max / 8), 6), np.arange(9)))  # grid of eps_max * k / 8


def test_feedback_allocation_follows_inverse_distance_and_sums_to_budget(tiny_model):
    loop = FeedbackLearning(_compiled(tiny_model), attack=AttackSpec("fgsm", eps=0.1), eps_max=0.2)
    np.testing.assert_array_equal(loop.allocation([0.01, 0.02, 0.04], 70), [40, 20, 10])
    assert loop.allocation([0.0, 0.1, 0.2, 0.05], 101).sum() == 101
    uniform = FeedbackLearning(_compiled(tiny_model), attack=AttackSpec("fgsm", eps=0.1), proportional=False)
    np.testing.assert_array_equal(uniform.allocation([0.01, 0.02, 0.04], 7), [3, 2, 2])


def test_inequality_matches_mean_difference_definition(rng):
    assert inequality([0.5, 0.5, 0.5])["gini"] == 0.0
    v = rng.uniform(0, 1, 7)
    mean_abs_diff = np.mean(np.abs(v[:, None] - v[None, :]))
    got = inequality(list(v))
    assert got["gini"] == pytest.approx(mean_abs_diff / (2 * v.mean()))
    assert got["range"] == pytest.approx(v.max() - v.min()) and got["std"] == pytest.approx(v.std())
    assert inequality([0.2, None, 0.4])["mean"] == pytest.approx(0.3)


def test_feedback_learning_reports_per_class_tables_and_resumes(tiny_model, tiny_data, test_split, tmp_path):
    x, y = tiny_data
    kwargs = dict(attack=AttackSpec("fgsm", eps=0.1), eps_max=0.2, probe_size=4, budget=64, batch_size=64,
                  directory=tmp_path / "fb")
    trained = _compiled(tiny_model)
    report = FeedbackLearning(trained, rounds=1, **kwargs).run(x, y, *test_split)
    before, after = report["rounds"]
    assert before["allocation"] is None and sum(after["allocation"]) == 64
    d, a = np.array(before["per_class_distance"]), np.array(after["allocation"])
    # weaker classes get more (up to the one example of largest-remainder rounding)
    assert all(a[i] >= a[j] - 1 for i in range(10) for j in range(10) if d[i] < d[j])
    for row in report["rounds"]:
        assert len(row["per_class_robust"]) == len(row["per_class_distance"]) == 10
        assert 0.0 <= row["robust_accuracy"] <= row["clean_accuracy"] + 1e-9
        assert set(row["inequality_robust"]) == {"std", "range", "gini", "mean"}
    model = _compiled(tiny_model, seed=4)
    counter = CountFits(model)
    again = FeedbackLearning(model, rounds=1, **kwargs).run(x, y, *test_split)
    assert counter.calls == 0 and again["rounds"] == report["rounds"]
    # the checkpoint restored the trained weights into the fresh model
    np.testing.assert_allclose(model.predict(x[:16], verbose=0), trained.predict(x[:16], verbose=0),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="directory"):
        ProactiveDefense(_compiled(tiny_model), attack=AttackSpec("fgsm", eps=0.1),
                         holdout_attack=AttackSpec("fgsm", eps=0.2), directory=tmp_path / "fb").run(
                             x, y, *test_split)


@pytest.mark.parametrize("make, match", [
    (lambda m: AttackSpec("cw", eps=0.1), "name"),
    (lambda m: AttackSpec("pgd", eps=-1.0), "eps"),
    (lambda m: ProactiveDefense(m, attack="fgsm", holdout_attack=AttackSpec("pgd", eps=0.1)), "attack"),
    (lambda m: ProactiveDefense(m, attack=AttackSpec("fgsm", eps=0.1),
                                holdout_attack=AttackSpec("pgd", eps=0.1), rounds=0), "rounds"),
    (lambda m: FeedbackLearning(m, attack=AttackSpec("fgsm", eps=0.1), distance="l2"), "distance"),
    (lambda m: FeedbackLearning(m, attack=AttackSpec("fgsm", eps=0.1), budget=0), "budget"),
])
def test_bad_arguments_raise(make, match, tiny_model):
    with pytest.raises((ValueError, TypeError), match=match):
        make(_compiled(tiny_model))


def test_an_uncompiled_model_is_refused(tiny_model):
    with pytest.raises(ValueError, match="compiled"):
        ProactiveDefense(tiny_model(), attack=AttackSpec("fgsm", eps=0.1),
                         holdout_attack=AttackSpec("pgd", eps=0.1))
    with pytest.raises(ValueError, match="method"):
        minimal_perturbation(tiny_model(), tf.zeros((1, 28, 28, 1)), [0], eps_max=0.1, method="cw")
