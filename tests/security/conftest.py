"""Fixtures of the security tests: counters in the cache and refusals in memory start clean."""
import pytest
from django.core.cache import cache

from annotation import authentication
from core import remembered


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    authentication._refused_here.clear()
    remembered.forget()
    yield
    cache.clear()
    authentication._refused_here.clear()
    remembered.forget()
