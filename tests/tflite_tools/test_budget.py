import numpy as np
import pytest

from tfrobust import models, tflite_tools, utils


@pytest.fixture(scope="module")
def tiny_b1():
    utils.set_seed(0)
    model = models.mcu_cnn(width=0.25)
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    return tflite_tools.convert(model, "int8", representative_data=x, batch_size=1)


def test_budget_passes_a_small_model_with_figures_from_the_file(tiny_b1):
    budget = tflite_tools.check_budget(tiny_b1)
    assert budget.ok and budget.over == []
    assert 0 < budget.weight_bytes < budget.file_bytes == len(tiny_b1)
    assert budget.weight_bytes == tflite_tools.weight_bytes(tiny_b1)
    assert budget.arena_bytes == tflite_tools.find_arena_size(tiny_b1).arena_size
    # every kernel's bytes are part of the weight figure
    assert sum(k.nbytes for k in tflite_tools.kernel_stats(tiny_b1)) <= budget.weight_bytes


def test_budget_refuses_an_over_budget_model_with_the_numbers(tiny_b1):
    weights = tflite_tools.weight_bytes(tiny_b1)
    with pytest.raises(tflite_tools.BudgetError) as info:
        tflite_tools.check_budget(tiny_b1, max_weight_bytes=weights - 100, max_arena_bytes=1024,
                                  arena_bytes=5000)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert f"weights {weights:,} B > {weights - 100:,} B budget (over by 100 B" in message
    assert "TFLite Micro arena 5,000 B > 1,024 B budget (over by 3,976 B" in message
    assert info.value.budget.weight_bytes == weights and not info.value.budget.ok


def test_budget_names_only_what_is_over(tiny_b1):
    with pytest.raises(tflite_tools.BudgetError, match="arena") as info:
        tflite_tools.check_budget(tiny_b1, max_weight_bytes=10**6, max_arena_bytes=100, arena_bytes=4096)
    assert "weights" not in str(info.value).split("Fix:")[0]


def test_budget_without_raising_returns_the_excess(tiny_b1):
    budget = tflite_tools.check_budget(tiny_b1, max_weight_bytes=10, max_arena_bytes=None, arena_bytes=4096,
                                       raise_error=False)
    assert not budget.ok and len(budget.over) == 1 and "over by" in budget.over[0]
    assert budget.to_dict()["ok"] is False


@pytest.mark.parametrize("kwargs, fragment", [({"max_weight_bytes": 0}, "max_weight_bytes"),
                                              ({"max_arena_bytes": -5}, "max_arena_bytes"),
                                              ({"arena_bytes": 0}, "arena_bytes"),
                                              ({"raise_error": "yes"}, "raise_error")])
def test_budget_bad_arguments(tiny_b1, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        tflite_tools.check_budget(tiny_b1, **{"arena_bytes": 4096, **kwargs})


def test_budget_refuses_non_tflite_bytes():
    with pytest.raises(TypeError, match="tflite_bytes"):
        tflite_tools.check_budget(b"not a model", arena_bytes=16)
