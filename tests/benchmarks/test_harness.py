import math

import pytest

from benchmarks._harness import compare, find_stalls, machine_idle_seconds, markdown_table


def _fake_clocks(walls, cpus):
    """A wall clock and a CPU clock advanced by each call of the work (no real timing)."""
    now = {"wall": 0.0, "cpu": 0.0}
    walls = {n: iter(v) for n, v in walls.items()}
    cpus = {n: iter(v) for n, v in cpus.items()}

    def work(name):
        def fn():
            now["wall"] += next(walls[name])
            now["cpu"] += next(cpus[name])
            return name.upper()
        return fn

    return work, (lambda: now["wall"]), (lambda: now["cpu"])


def _no_idle():
    return None


def test_compare_alternates_excludes_warmup_and_takes_ratios_per_round():
    calls = []
    work, clock, cpu_clock = _fake_clocks({"base": [10, 1, 2, 3], "fast": [20, 1, 1, 1]},
                                          {"base": [9, 2, 2, 2], "fast": [9, 1, 1, 1]})

    def logged(name):
        fn = work(name)
        return lambda: (calls.append(name), fn())[1]

    res = compare({"base": logged("base"), "fast": logged("fast")}, baseline="base", rounds=3, warmup=1,
                  clock=clock, cpu_clock=cpu_clock, idle_clock=_no_idle, stall_factor=5)
    assert calls == ["base", "fast", "fast", "base", "base", "fast", "fast", "base"]
    assert res["variants"]["base"]["seconds"]["values"] == [1, 2, 3]
    assert res["variants"]["base"]["cpu_seconds"]["values"] == [2, 2, 2]
    assert res["variants"]["fast"]["ratio"]["values"] == [1.0, 0.5, 1 / 3]
    assert res["variants"]["fast"]["ratio"]["median"] == 0.5
    assert res["variants"]["fast"]["ratio_of_fastest"] == 1.0
    assert res["variants"]["base"]["ratio"] is None
    assert res["variants"]["fast"]["last_value"] == "FAST"
    assert res["order"] == [["fast", "base"], ["base", "fast"], ["fast", "base"]]
    assert res["environment"]["versions"]["tensorflow"]
    md = markdown_table(res, title="t", value_name="value")
    assert "| fast |" in md and "0.500" in md and "Measured" in md and "No stalled round" in md


def test_find_stalls_flags_rounds_above_factor_of_fastest_with_the_cause():
    # 2.55 s of work; two rounds end at the 5.11 s autotuner tick with the same CPU time, one
    # round did twice the work (a retrace), one is slow by less than the factor.
    wall = [2.55, 5.11, 2.60, 3.70, 5.12, 5.30]
    cpu = [4.80, 4.85, 4.90, 4.70, 4.79, 9.90]
    stalls = find_stalls(wall, cpu, factor=1.5)
    assert sorted(stalls) == [1, 4, 5]
    assert "off the CPU" in stalls[1] and "2.00x the fastest round (2.55 s)" in stalls[1]
    assert "more work" in stalls[5]


def test_find_stalls_tells_a_stall_from_other_load_by_the_machine_idle_time():
    wall, cpu = [2.5, 5.1, 5.1], [4.8, 4.8, 4.8]
    stalls = find_stalls(wall, cpu, [0.1, 4.0, 0.2])
    assert "a stall" in stalls[1] and "other load" in stalls[2]
    assert "a stall or other load" in find_stalls(wall, cpu, [None, None, None])[1]


def test_find_stalls_none_when_every_round_is_within_factor():
    assert find_stalls([2.0, 2.9, 2.5], [4.0, 4.1, 4.0], factor=1.5) == {}
    assert find_stalls([], []) == {}


@pytest.mark.parametrize("kwargs, match", [({"wall": [1.0], "cpu": []}, "same length"),
                                           ({"wall": [1.0], "cpu": [1.0], "idle": []}, "same length"),
                                           ({"wall": [1.0], "cpu": [1.0], "factor": 1.0}, "factor"),
                                           ({"wall": [1.0], "cpu": [1.0], "factor": math.nan}, "factor"),
                                           ({"wall": [-1.0], "cpu": [1.0]}, "wall"),
                                           ({"wall": [1.0], "cpu": [math.inf]}, "cpu")])
def test_find_stalls_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_stalls(**kwargs)


def test_compare_leaves_stalled_rounds_out_of_medians_and_ratios():
    # round 2 of "limit" and round 3 of "pgd" stall to the next 5.11 s tick; CPU stays put
    work, clock, cpu_clock = _fake_clocks(
        {"limit": [2.5, 2.55, 5.11, 2.60, 2.58], "pgd": [2.5, 2.54, 2.56, 5.11, 2.57]},
        {"limit": [4.8] * 5, "pgd": [4.8] * 5})
    res = compare({"limit": work("limit"), "pgd": work("pgd")}, baseline="limit", rounds=4, warmup=1,
                  clock=clock, cpu_clock=cpu_clock, idle_clock=_no_idle)
    lim, pgd = res["variants"]["limit"], res["variants"]["pgd"]
    assert list(lim["stalled"]) == ["1"] and list(pgd["stalled"]) == ["2"]
    assert lim["seconds"]["values"] == pytest.approx([2.55, 5.11, 2.60, 2.58])  # raw rounds all kept
    assert lim["seconds"]["median"] == pytest.approx(2.58) and lim["seconds"]["max"] == pytest.approx(2.60)
    assert pgd["seconds"]["median"] == pytest.approx(2.56)
    # ratios only from rounds 0 and 3, where neither stalled
    assert pgd["ratio"]["values"][1] is None and pgd["ratio"]["values"][2] is None
    assert pgd["ratio"]["median"] == pytest.approx((2.54 / 2.55 + 2.57 / 2.58) / 2)
    assert pgd["ratio_of_fastest"] == pytest.approx(2.54 / 2.55)
    md = markdown_table(res, title="PGD")
    assert "5.11/4.80*" in md and "limit, round 2:" in md and "pgd, round 3:" in md
    assert "left out of the medians" in md


def test_compare_pairs_only_rounds_where_neither_variant_stalled():
    work, clock, cpu_clock = _fake_clocks({"a": [1.0, 1.0, 5.0], "b": [5.0, 1.0, 1.0]},
                                          {"a": [1.0] * 3, "b": [1.0] * 3})
    res = compare({"a": work("a"), "b": work("b")}, baseline="a", rounds=3, warmup=0, clock=clock,
                  cpu_clock=cpu_clock, idle_clock=_no_idle)
    # b stalls in round 0, a in round 2: only round 1 gives a ratio
    assert res["variants"]["b"]["ratio"]["values"] == [None, 1.0, None]
    assert res["variants"]["b"]["ratio"]["median"] == 1.0


def test_compare_says_so_when_no_round_pair_is_clean():
    work, clock, cpu_clock = _fake_clocks({"a": [1.0, 5.0, 1.0], "b": [5.0, 1.0, 5.0]},
                                          {"a": [1.0] * 3, "b": [1.0] * 3})
    res = compare({"a": work("a"), "b": work("b")}, baseline="a", rounds=3, warmup=0, clock=clock,
                  cpu_clock=cpu_clock, idle_clock=_no_idle)
    assert res["variants"]["b"]["ratio"]["median"] is None
    assert res["variants"]["b"]["ratio_of_fastest"] == 1.0
    assert "no round without a stall" in markdown_table(res, title="t")


@pytest.mark.parametrize("kwargs, match", [({"baseline": "nope"}, "baseline"),
                                           ({"baseline": "a", "rounds": 0}, "rounds"),
                                           ({"baseline": "a", "warmup": -1}, "warmup")])
def test_compare_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare({"a": lambda: None}, **kwargs)


def test_machine_idle_seconds_is_a_nonnegative_count_or_unknown():
    idle = machine_idle_seconds()
    assert idle is None or (isinstance(idle, float) and idle >= 0)
