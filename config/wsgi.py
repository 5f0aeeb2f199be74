"""WSGI entry point for granian and gunicorn."""
import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
django_application = get_wsgi_application()

from annotation.authentication import KeyGuessingGate  # noqa: E402  (needs Django set up)
from annotation.labeling_fast_path import LabelingFastPath  # noqa: E402
from serving.predict_fast_path import PredictFastPath  # noqa: E402

# next/labels with a personal token and ordinary predict requests with a project token skip
# Django's request handling; all else goes through it, and so does every request from an
# address refused for guessing API keys.
application = KeyGuessingGate(PredictFastPath(LabelingFastPath(django_application)),
                              django_application)
# Everything loaded so far (Django, numpy, scikit-learn: hundreds of thousands of objects)
# lives as long as the process: keep it out of the garbage collector's full collections,
# which otherwise walk it all and stall a busy worker for tens of milliseconds each time.
gc.freeze()
