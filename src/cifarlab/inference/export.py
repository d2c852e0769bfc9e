"""Export a trained run for use without cifarlab: ONNX or TorchScript.

The exported graph takes float RGB in [0, 1], shape (N, 3, S, S) with S the run's image size
(32 for CIFAR), any N, and returns logits:
normalisation (and the run's test-time augmentation, if any) is inside, so a user only has to
resize and scale pixels. Class names travel in the file: ONNX metadata_props["classes"], or
TorchScript's extra file "cifarlab.json".
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab.errors import CifarlabError
from cifarlab.files import publishing
from cifarlab.inference.loading import load_model
from cifarlab.runs import RunFolder, checkpoint_file
from cifarlab.runs.claims import check_output
from cifarlab.version import __version__

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}  # beside a .pt file


def input_spec(size: int) -> str:
    return f"float32 RGB in [0, 1], shape (N, 3, {size}, {size}); normalisation is inside the model"


def default_output(checkpoint: str | os.PathLike, fmt: str) -> Path:
    """The run folder's export file, or one beside a .pt file (best.onnx)."""
    p = Path(checkpoint)
    if p.is_dir():
        return RunFolder(p).export_path(fmt)
    return p.with_suffix("").with_name(p.stem + FORMATS[fmt])


def export_model(checkpoint: str | os.PathLike, fmt: str = "onnx",
                 out: str | os.PathLike | None = None, *, tta: str | None = None,
                 check: bool = True) -> dict[str, Any]:
    """Write the export; returns its path, metadata and (with `check`) the largest logit
    difference between the exported file and the PyTorch model on random inputs."""
    if fmt not in FORMATS:
        raise CifarlabError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    # float32, normalisation and TTA inside; every image gets all views (a graph of fixed shape)
    wrapper = load_model(checkpoint, "cpu", tta=tta, tta_share=1.0)
    cfg = wrapper.config
    out = Path(out) if out else default_output(checkpoint, fmt)
    check_output(out, own=default_output(checkpoint, fmt))
    if (out.suffix == ".onnx") != (fmt == "onnx"):
        raise CifarlabError(f"{out} does not fit --format {fmt}: name an ONNX file *.onnx and "
                            "a TorchScript one otherwise (*.pt), or change --format")
    size = wrapper.image_size
    meta = {"classes": wrapper.classes, "input": input_spec(size), "image_size": size,
            "output": "logits (N, classes); softmax gives probabilities",
            "model": cfg.model, "model_args": cfg.model_args,
            "mean": wrapper.mean.flatten().tolist(), "std": wrapper.std.flatten().tolist(),
            "tta": wrapper.tta, "checkpoint": str(checkpoint_file(checkpoint)),
            "cifarlab_version": __version__}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        (export_onnx if fmt == "onnx" else export_torchscript)(wrapper, out, meta)
    except OSError as e:
        raise CifarlabError(f"cannot write {out}: {e.strerror or e}") from None
    result = {"path": str(out), "format": fmt, "metadata": meta}
    if check:
        x = torch.rand(5, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = wrapper(x)
        got = run_exported(out, x)
        result["max_abs_diff"] = (got - expected).abs().max().item()
    return result


def export_onnx(wrapper: nn.Module, out: Path, meta: dict[str, Any]) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise CifarlabError("ONNX export needs the onnx and onnxscript packages: "
                            "pip install 'cifarlab[export]'") from None
    example = torch.rand(2, 3, meta["image_size"], meta["image_size"])
    batch = torch.export.Dim("batch")
    # The exporter prints its progress; keep the command's output to what it wrote.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapper, (example,), input_names=["image"],
                                    output_names=["logits"], dynamic_shapes=({0: batch},),
                                    dynamo=True)
    proto = program.model_proto
    for key, value in (("classes", json.dumps(meta["classes"])), ("cifarlab", json.dumps(meta))):
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value
    proto.doc_string = f"cifarlab {meta['model']}: {meta['input']}"
    with publishing(out) as tmp:
        onnx.save(proto, str(tmp))


def export_torchscript(wrapper: nn.Module, out: Path, meta: dict[str, Any]) -> None:
    example = torch.rand(2, 3, meta["image_size"], meta["image_size"])
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export,
        warnings.simplefilter("ignore")  # but TorchScript is still what C++/mobile load
        traced = torch.jit.trace(wrapper, example)
        with publishing(out) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={"cifarlab.json": json.dumps(meta)})


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The cifarlab metadata (class names, input spec, ...) stored in an exported file."""
    p = Path(path)
    if p.suffix == ".onnx":
        import onnx

        props = {e.key: e.value for e in onnx.load(str(p), load_external_data=False)
                 .metadata_props}
        return json.loads(props["cifarlab"])
    files = {"cifarlab.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(p), _extra_files=files)
    return json.loads(files["cifarlab.json"])


def run_exported(path: str | os.PathLike, x: torch.Tensor) -> torch.Tensor:
    """Logits from an exported file: ONNX Runtime (CPU) for .onnx, torch.jit for TorchScript."""
    p = Path(path)
    if p.suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise CifarlabError("checking an ONNX file needs onnxruntime: "
                                "pip install 'cifarlab[export]'") from None
        session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(p))
    with torch.inference_mode():
        return module(x)
