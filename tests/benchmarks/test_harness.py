
import pytest

from benchmarks._harness import compare, markdown_table


def test_compare_alternates_excludes_warmup_and_takes_ratios_per_round():
    calls = []
    times = {"base": iter([10, 1, 2, 3]), "fast": iter([20, 1, 1, 1])}
    now = [0.0]

    def clock():
        return now[0]

    def work(name):
        def fn():
            calls.append(name)
            now[0] += next(times[name])
            return name.upper()
        return fn

    res = compare({"base": work("base"), "fast": work("fast")}, baseline="base", rounds=3, warmup=1,
                  clock=clock)
    assert calls == ["base", "fast", "fast", "base", "base", "fast", "fast", "base"]
    assert res["variants"]["base"]["seconds"]["values"] == [1, 2, 3]
    assert res["variants"]["fast"]["ratio"]["values"] == [1.0, 0.5, 1 / 3]
    assert res["variants"]["fast"]["ratio"]["median"] == 0.5
    assert res["variants"]["base"]["ratio"] is None
    assert res["variants"]["fast"]["last_value"] == "FAST"
    assert res["order"] == [["fast", "base"], ["base", "fast"], ["fast", "base"]]
    assert res["environment"]["versions"]["tensorflow"]
    md = markdown_table(res, title="t", value_name="value")
    assert "| fast |" in md and "0.500" in md and "Measured" in md


@pytest.mark.parametrize("kwargs, match", [({"baseline": "nope"}, "baseline"),
                                           ({"baseline": "a", "rounds": 0}, "rounds"),
                                           ({"baseline": "a", "warmup": -1}, "warmup")])
def test_compare_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare({"a": lambda: None}, **kwargs)
