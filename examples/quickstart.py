"""Quick start with the Python client, notebook style: run it cell by cell, or as a script.

    pip install ./client
    ANNOTATION_URL=http://127.0.0.1:8000 ANNOTATION_TOKEN=<key> ANNOTATION_PROJECT=news \
        python examples/quickstart.py

The token is a project token with the scopes predict, feedback, admin and monitor
(`manage.py create_token news --scopes predict,feedback,admin,monitor`) of a text
project whose labels include "spam" and "ham" (the data below); CI runs this file against
a live server (tests/client/test_quickstart.py).
"""
import os
import tempfile
from pathlib import Path

import pandas as pd

from annotation_client import ApiError, Client

client = Client(os.environ["ANNOTATION_URL"], os.environ["ANNOTATION_TOKEN"])
slug = os.environ.get("ANNOTATION_PROJECT", "news")

# %% What this token reaches
print(client.projects()[["slug", "kind", "labels", "served_version"]])

# %% Import a DataFrame: labeled rows train the next model (a progress line on stderr)
new = pd.DataFrame({
    "text": ["claim your free prize", "notes from the team meeting", "cash offer inside"],
    "label": ["spam", "ham", "spam"],
})
job = client.import_samples(slug, new)
print(f"imported {job['rows_ok']} rows")

# %% Predict a DataFrame: one row per input, index kept, probabilities as columns
inbox = pd.DataFrame({"text": ["win cash now", "lunch with the report team", "free offer"]})
predictions = client.predict(slug, inbox)
print(inbox.join(predictions[["label", "confidence"]]))

# %% Tell the service what the right answer was: it becomes a labeled sample
client.feedback(slug, "spam", prediction_id=predictions["id"].iloc[0])

# %% Model versions, and the served one's metrics
models = client.models(slug)
print(models[["number", "status", "accuracy", "is_served"]])
served = int(models.loc[models["is_served"], "number"].iloc[0])
print(client.model(slug, served)["metrics"]["per_class"])

# %% Take the model elsewhere: MLflow (mlflow.pyfunc.load_model on the unzipped folder)
path = client.export_model(slug, served, format="mlflow",
                           path=Path(tempfile.mkdtemp()) / "model.zip")
print("exported", path)
try:
    client.export_model(slug, served, format="onnx")
except ApiError as error:  # text features have no ONNX converter: the API says why
    print("no ONNX:", error.code, error.detail)

# %% Monitoring over the last hour, as DataFrames
report = client.monitoring(slug, window="1h")
print(report.summary["requests"], "requests;", report.classes.to_dict("records"))

# %% Every label so far
labels = client.labels(slug)
print(labels["label"].value_counts())
