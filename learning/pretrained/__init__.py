"""Pretrained featurizers, offline: CNN features for images, MiniLM embeddings for texts.

- ``files``: where each featurizer's files live on this machine (``FEATURIZER_DIR``) and
  their sha256 check before anything loads them;
- ``install``: the set-up command (``make featurizers``) that fills that directory once;
  ``export_cnn`` is the script it runs in a separate torch venv;
- ``runtime``: onnxruntime sessions turning pixel rows and texts into embeddings;
- ``transformers``: the scikit-learn featurizers a project's artifact holds (embeddings,
  then scaling and PCA for images).

No Django models here; the project-facing parts are ``learning.featurizer_options`` and
``learning.services.embeddings``.
"""
