"""Fixtures of the annotation tests."""
import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Forget cached sample totals: test databases reuse project ids after a rollback."""
    cache.clear()
    yield
    cache.clear()
