"""Test-session settings shared by every test file."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    """scikit-learn's small fits run ~40x slower with 2 contended BLAS threads than with one."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
