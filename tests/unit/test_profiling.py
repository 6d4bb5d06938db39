import pytest
import torch

from kdlab.errors import ParameterError
from kdlab.profiling import step_cost


def test_peak_memory_sees_a_transient_tensor_that_is_freed_inside_the_step():
    def step():
        big = torch.empty(2**20)  # 4 MiB, freed before the step returns
        del big

    cost = step_cost(step, repeats=2)
    assert 4 * 2**20 <= cost.peak_bytes < 5 * 2**20
    assert cost.seconds > 0


def test_what_was_alive_before_the_step_is_not_counted():
    alive = torch.empty(8 * 2**20)  # 32 MiB held by the caller
    cost = step_cost(lambda: torch.empty(2**18).add_(1), repeats=2)
    assert cost.peak_bytes < 2 * 2**20 and alive.numel() == 8 * 2**20


def test_a_backward_pass_through_a_wider_layer_costs_more_memory():
    def step_for(width):
        x = torch.randn(128, 32)
        w = torch.randn(32, width, requires_grad=True)
        return lambda: (x @ w).relu().sum().backward()

    narrow, wide = step_cost(step_for(64), repeats=2), step_cost(step_for(1024), repeats=2)
    time_ratio, memory_ratio = wide.relative_to(narrow)
    assert memory_ratio > 8


def test_without_peak_the_step_runs_only_its_warmup_and_repeats():
    calls = []
    cost = step_cost(lambda: calls.append(torch.empty(2**20)), repeats=3, warmup=1, peak=False)
    assert cost.peak_bytes is None and len(calls) == 4, "peak=False must not run the step a fifth time to profile it"
    step_cost(lambda: calls.append(torch.empty(2**20)), repeats=3, warmup=1)
    assert len(calls) == 9


def test_repeats_must_be_positive():
    with pytest.raises(ParameterError, match="repeats=0"):
        step_cost(lambda: None, repeats=0)


def test_load_average_is_three_numbers_or_says_unavailable():
    from kdlab.profiling import load_average

    value = load_average()
    assert value == "unavailable" or (len(value) == 3 and all(v >= 0 for v in value))
