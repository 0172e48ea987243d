"""Test-session settings shared by every test file."""

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny tensors and small scikit-learn fits run fastest on one thread (far faster than two on a
    busy 2-core machine); tests measure behaviour, never speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(threads)
