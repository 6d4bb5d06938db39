"""Notebooks on CUDA. Run on a GPU machine with `make gpu-test` (skipped where no GPU is visible)."""
import pytest
import torch

from kdlab.runner import execute_notebook

from ..notebooks.conftest import notebook_params

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible"),
]


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_runs_on_cuda(path, tmp_path):
    result = execute_notebook(path, tmp_path / path.name, profile="smoke", parameters={"DEVICE": "cuda"},
                              execution_timeout=600, outer_timeout=900)
    assert result.status == "ok", result.error
