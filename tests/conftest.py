"""Test-session settings shared by every test file."""

import os

import pytest
import torch
from hypothesis import settings
from threadpoolctl import threadpool_limits

# Property tests draw the same examples on every run (CI must not turn red by chance);
# HYPOTHESIS_PROFILE=explore searches afresh on a developer's machine.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny tensors and small scikit-learn fits run fastest on one thread (far faster than two on a
    busy 2-core machine); tests measure behaviour, never speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(threads)
