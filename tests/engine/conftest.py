"""Trainer tests run with one intra-op thread: on the shared 2-core CI/dev machines two OpenMP threads per test
process spin against the other processes and make a training step ~10× slower (measured: 9 s vs 0.9 s)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
