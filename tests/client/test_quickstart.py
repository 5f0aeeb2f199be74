"""examples/quickstart.py runs as a script against a live server."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.services import api_token_create
from tests.client.conftest import ALL_SCOPES

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


@pytest.mark.django_db(transaction=True)
def test_quickstart_runs(service):
    project, client, _predictor, _person = service
    _token, key = api_token_create(project=project, scopes=ALL_SCOPES)
    env = {**os.environ, "ANNOTATION_URL": client.url, "ANNOTATION_TOKEN": key,
           "ANNOTATION_PROJECT": project.slug}
    run = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "imported 3 rows" in run.stdout
    assert "no ONNX: not_exportable" in run.stdout
    assert "exported" in run.stdout and "requests;" in run.stdout
    assert "import " in run.stderr  # the progress line
