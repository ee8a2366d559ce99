"""The one attack table: attacks.get (names, config dicts, instances) and configured attacks."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks


def test_get_accepts_names_dicts_class_configs_and_instances():
    pgd = attacks.get("pgd", eps=0.1)
    assert pgd.get_config() == {"name": "pgd", "eps": 0.1, "norm": "linf", "steps": 20, "step_size": None,
                                "restarts": 1, "random_start": True, "loss": "ce"}
    assert attacks.get(pgd.get_config()) == pgd and attacks.get(pgd) is pgd
    assert pgd.effective_step_size == pytest.approx(2.5 * 0.1 / 20)
    apgd = attacks.get({"class_name": "APGD", "config": {"eps": 0.1, "loss": "dlr"}})
    assert apgd.get_config()["name"] == "apgd-dlr" and attacks.get(apgd.get_config()) == apgd
    t = attacks.get({"name": "apgd-t", "eps": 8 / 255})
    assert (t.steps, t.targets, t.restarts) == (100, 9, 1)  # AutoAttack's standard APGD-T
    sq = attacks.get("square", eps=0.05)
    assert (sq.queries, sq.p_init, sq.gradient_free) == (5000, 0.8, True)
    assert set(attacks.names()) >= {"fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "square", "random-search"}


@pytest.mark.parametrize("identifier, overrides, error, fragment", [
    ("cw", {"eps": 0.1}, ValueError, "apgd-t"),  # the message lists the known names
    ("pgd", {}, ValueError, "eps"),
    ({"name": "pgd", "eps": -1.0}, {}, ValueError, "eps"),
    ({"name": "pgd", "eps": 0.1, "steps": 2.5}, {}, TypeError, "steps"),
    ({"name": "apgd-ce", "eps": 0.1, "loss": "dlr"}, {}, ValueError, "loss"),
    ({"name": "pgd", "eps": 0.1, "targets": 3}, {}, TypeError, "targets"),
    ({"class_name": "CW", "config": {}}, {}, ValueError, "class_name"),
    (3, {}, TypeError, "identifier"),
])
def test_get_bad_identifiers_raise_naming_the_problem(identifier, overrides, error, fragment):
    with pytest.raises(error, match=fragment):
        attacks.get(identifier, **overrides)


def test_configured_attack_calls_the_function_with_the_data_range():
    def model_fn(t):
        flat = tf.reshape(t, [-1, 4])
        return tf.concat([flat[:, :2], -flat[:, 2:]], 1)

    x = np.random.default_rng(0).uniform(-1, 1, (8, 2, 2, 1)).astype(np.float32)
    y = np.argmax(model_fn(x).numpy(), 1)
    for name in ("fgsm", "pgd", "apgd-ce", "apgd-t", "random-search"):
        extra = {"targets": 2} if name == "apgd-t" else {}
        attack = attacks.get(name, eps=0.2, **extra)
        x_adv = attack(model_fn, x, y, clip_min=-1.0, clip_max=1.0, seed=0).numpy()
        assert x_adv.min() >= -1.0 and x_adv.max() <= 1.0 and np.abs(x_adv - x).max() <= 0.2 + 1e-6, name
    a = attacks.get("pgd", eps=0.2, steps=5)(model_fn, x, y, clip_min=-1.0, clip_max=1.0, seed=3)
    b = attacks.pgd(model_fn, x, y, eps=0.2, steps=5, step_size=2.5 * 0.2 / 5, clip_min=-1.0, clip_max=1.0,
                    seed=3)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
