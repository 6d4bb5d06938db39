"""One torch thread for every test: the kit's models are tiny and CI has two shared cores, where
several OpenMP threads per process made steps 10-100x slower (see kdlab.env.default_threads)."""
import os

import pytest

os.environ.setdefault("KDLAB_THREADS", "1")
os.environ.setdefault("KDLAB_RUN_CACHE", "0")  # every test computes; tests/unit/test_run_cache.py turns it on

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smoke_executed_dir(tmp_path_factory):
    """Where the smoke execution tests leave their executed notebooks; the smoke book reuses them
    (KDLAB_BOOK_REUSE) instead of executing every notebook a second time."""
    return tmp_path_factory.mktemp("smoke-executed")


def pytest_collection_modifyitems(items):
    """The book's tests run last, so that its build finds the smoke execution tests' notebooks to reuse."""
    book = [item for item in items if "/tests/book/" in str(item.path).replace("\\", "/")]
    if book:
        items[:] = [item for item in items if item not in book] + book
