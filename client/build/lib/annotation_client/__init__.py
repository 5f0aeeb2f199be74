"""Python client of the active-learning annotation service.

>>> from annotation_client import Client
>>> client = Client("http://127.0.0.1:8000", token)
>>> client.predict("news", ["free cash now", "lunch at noon"])  # doctest: +SKIP
"""
from annotation_client.client import Client
from annotation_client.errors import ApiError
from annotation_client.frames import Monitoring

__all__ = ["ApiError", "Client", "Monitoring"]
__version__ = "0.1.0"
