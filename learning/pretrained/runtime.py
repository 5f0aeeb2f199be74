"""onnxruntime sessions that turn pixel rows and texts into embeddings.

A session is opened once per process and file (after ``files.verified_paths`` checked
the file's sha256) and reused; inputs go through in chunks so memory stays flat on a large
pool. One intra-op thread per session: workers run one process per core already.
No Django imports.
"""
from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence

import numpy as np

from learning.features import FeatureError, image_array, text_list
from learning.pretrained import files

CNN_CHUNK = 32
TEXT_CHUNK = 64
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 256 word pieces at most

_sessions: dict[tuple, object] = {}
_lock = threading.Lock()


def _session(name: str, file: str = "model.onnx"):
    paths = files.verified_paths(name)
    key = (name, str(paths[file]), files.manifest().get(name, {}).get("files", {}).get(file))
    with _lock:
        session = _sessions.get(key)
    if session is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(paths[file]), options,
                                       providers=["CPUExecutionProvider"])
        with _lock:
            _sessions[key] = session
    return session


def _tokenizer():
    paths = files.verified_paths("minilm")
    key = ("minilm-tokenizer", str(paths["tokenizer.json"]))
    with _lock:
        tokenizer = _sessions.get(key)
    if tokenizer is None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(paths["tokenizer.json"]))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in a chunk
        with _lock:
            _sessions[key] = tokenizer
    return tokenizer


def square_side(width: int) -> int:
    """The side of the square grayscale image a pixel row of ``width`` values holds."""
    side = math.isqrt(width)
    if side * side != width or side == 0:
        raise FeatureError(f"a pixel row of {width} values is not a square grayscale image")
    return side


def cnn_inputs(pixels) -> np.ndarray:
    """Return pixel rows as float32 in [0, 1] (0-255 rows divided), checked to be square."""
    X = image_array(pixels)
    if X.size and X.max() > 1.0:  # 0-255 rows, image_array's own rule
        X = X / np.float32(255.0)
    square_side(X.shape[1])
    return np.ascontiguousarray(X, dtype=np.float32)


def cnn_run(X: np.ndarray) -> np.ndarray:
    """Return the CNN's features (``files.CNN.dims`` of them) of each row of ``cnn_inputs``."""
    session = _session("cnn")
    side = square_side(X.shape[1]) if len(X) else 1
    out = np.empty((len(X), files.CNN.dims), dtype=np.float32)
    for start in range(0, len(X), CNN_CHUNK):
        chunk = X[start:start + CNN_CHUNK].reshape(-1, 1, side, side)
        out[start:start + len(chunk)] = session.run(None, {"pixels": chunk})[0]
    return out


def text_run(texts: Sequence[str]) -> np.ndarray:
    """Return each text's 384-d MiniLM embedding: mean pooling, then L2 normalisation."""
    session, tokenizer = _session("minilm"), _tokenizer()
    out = np.empty((len(texts), files.MINILM.dims), dtype=np.float32)
    for start in range(0, len(texts), TEXT_CHUNK):
        encoded = tokenizer.encode_batch(list(texts[start:start + TEXT_CHUNK]))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out[start:start + len(encoded)] = pooled / np.maximum(norms, 1e-12)
    return out


def content_keys(inputs) -> np.ndarray:
    """A 64-bit key per input (pixel row bytes, or a text's UTF-8): the embedding cache's
    ids, so any caller that featurizes the same rows reuses their embeddings."""
    if isinstance(inputs, np.ndarray):
        blobs = (row.tobytes() + str(inputs.shape[1]).encode() for row in inputs)
    else:
        blobs = (text.encode("utf-8", "surrogatepass") for text in inputs)
    digests = b"".join(hashlib.blake2b(blob, digest_size=8).digest() for blob in blobs)
    return np.frombuffer(digests, dtype="<i8").astype(np.int64)


# name -> (model input -> the rows the model runs on, those rows -> embeddings)
RUNNERS = {"cnn": (cnn_inputs, cnn_run), "minilm": (text_list, text_run)}
