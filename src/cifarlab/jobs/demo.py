"""`cifarlab demo RUN_OR_PACKAGE`: a page to try a model (Gradio, the extra `cifarlab[demo]`).
Drop or pick an image, or one of the test set's, and see the top-5 classes as bars, the image
as the network sees it, the heatmap of what the top class came from and the time it took; a
batch of files gives a table, downloadable as CSV. The same functions are Gradio's HTTP API
(`/classify`, `/classify_batch`). Images go through `classify_files`, as `cifarlab predict`'s
do: the same probabilities, the same one-line messages for bad files."""

from __future__ import annotations

import csv
import ipaddress
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarlab.errors import CifarlabError
from cifarlab.inference.predict import classify_files, load_predictor
from cifarlab.models import Classifier
from cifarlab.runs.run_data import load_data_for

VIEW_SIZE = 224  # the network's input drawn this wide, each pixel a block
CSV_COLUMNS = ("file", "class", "probability", "top-5", "error")


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        import gradio as gr
    except ImportError:
        raise CifarlabError("the demo needs Gradio: pip install 'cifarlab[demo]'") from None
    return gr


def theme() -> Any:
    """Gradio's default look in the system's fonts: the page asks no font server."""
    gr = _gradio()
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])


def network_view(pixels: np.ndarray) -> np.ndarray:
    """The network's input (uint8, (3, S, S)) as an HxWx3 picture, enlarged without blur."""
    scale = max(1, VIEW_SIZE // pixels.shape[-1])
    return pixels.transpose(1, 2, 0).repeat(scale, 0).repeat(scale, 1)


def uploaded(payload: Any) -> str | None:
    """The path of an unprocessed upload (Gradio's FileData, as a dict or a plain path)."""
    if isinstance(payload, dict):
        return payload.get("path")
    return getattr(payload, "path", payload)


def heatmap_view(model: Classifier, pixels: np.ndarray, top: str) -> np.ndarray | None:
    """What the top class came from: its Grad-CAM heatmap over the network's view; None
    without captum (the rest of the page works without it)."""
    from cifarlab.inference.heatmaps import grad_cam, overlay

    try:
        maps, _ = grad_cam(model, torch.from_numpy(pixels)[None],
                           torch.tensor([model.classes.index(top)]))
    except CifarlabError:
        return None
    return overlay(pixels.transpose(1, 2, 0), maps[0].numpy(), size=VIEW_SIZE)


def classify_one(model: Classifier, path: str | None
                 ) -> tuple[dict, np.ndarray | None, np.ndarray | None, str]:
    """One file: ({class: probability} of the top 5, the network's view, the heatmap of the
    top class over it, a status line)."""
    if not path:
        return {}, None, None, "Drop an image, or pick one of the test images below."
    start = time.perf_counter()
    r = next(classify_files(model, [path], topk=5, keep_pixels=True))
    took = 1000 * (time.perf_counter() - start)
    if "error" in r:
        return {}, None, None, f"cannot classify {Path(path).name}: {r['error']}"
    top = r["top"][0]
    return ({t["class"]: t["probability"] for t in r["top"]}, network_view(r["pixels"]),
            heatmap_view(model, r["pixels"], top["class"]),
            f"{top['class']} ({100 * top['probability']:.1f}%), classified in {took:.1f} ms")


def classify_batch(model: Classifier, paths: list[str] | None, out_dir: Path
                   ) -> tuple[list[list[Any]], str | None]:
    """Many files: a table row each (bad files with their message) and the CSV file."""
    rows = []
    for r in classify_files(model, paths or [], topk=5):
        name = Path(r["file"]).name
        if "error" in r:
            rows.append([name, "", None, "", r["error"]])
            continue
        top = r["top"][0]
        rows.append([name, top["class"], round(top["probability"], 6),
                     ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in r["top"]),
                     ""])
    if not rows:
        return [], None
    out = out_dir / f"predictions-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([CSV_COLUMNS, *rows])
    return rows, str(out)


def test_examples(model: Classifier, out_dir: Path, data_dir: str | None, per_class: int = 1,
                  most: int = 12) -> tuple[list[str], list[str]]:
    """PNG files of the first test images of the first classes, and their true labels
    ("cat, test image 3"); none (and a line that says why) without the dataset."""
    from PIL import Image

    cfg = model.config
    try:
        data = load_data_for(cfg, data_dir, download=False)
    except CifarlabError as e:
        print(f"no test images to pick from ({e}); pass --data-dir PATH to offer them")
        return [], []
    images, labels = data.split(data.evaluation_split)
    files = []
    names = []
    taken = {}
    for i, y in enumerate(labels.tolist()):
        if taken.get(y, 0) >= per_class or (y not in taken and len(taken) >= most):
            continue
        taken[y] = taken.get(y, 0) + 1
        path = out_dir / f"{model.classes[y]}-{i}.png"
        Image.fromarray(images[i].numpy().transpose(1, 2, 0)).save(path)
        files.append(str(path))
        names.append(f"{model.classes[y]}, test image {i}")
    return files, names


def build_app(model: Classifier, title: str, work: Path, data_dir: str | None = None) -> Any:
    """The Gradio Blocks page of `model`; its files (examples, CSVs) go to `work`."""
    gr = _gradio()
    examples, labels = test_examples(model, work, data_dir)
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\n{len(model.classes)} classes: {', '.join(model.classes[:20])}"
                    f"{' ...' if len(model.classes) > 20 else ''}")
        with gr.Tab("One image"):
            with gr.Row():
                image = gr.Image(type="filepath", label="image", elem_id="image")
                with gr.Column():
                    top5 = gr.Label(num_top_classes=5, label="top-5", elem_id="top5")
                    with gr.Row():
                        view = gr.Image(label=f"as the network sees it "
                                        f"({model.image_size}x{model.image_size})",
                                        interactive=False, elem_id="view")
                        heat = gr.Image(label="what the top class came from (Grad-CAM)",
                                        interactive=False, elem_id="heatmap")
            status = gr.Markdown(elem_id="status")
            if examples:
                gr.Examples(examples, inputs=image, example_labels=labels,
                            label="test images (true class in the name)")
            # unprocessed: the file reaches cifarlab's reader (and its messages) as uploaded
            image.change(lambda f: classify_one(model, uploaded(f)), image,
                         [top5, view, heat, status], api_name="classify", preprocess=False)
        with gr.Tab("Many images"):
            files = gr.File(file_count="multiple", type="filepath", label="images",
                            elem_id="files")
            table = gr.Dataframe(headers=list(CSV_COLUMNS), label="predictions",
                                 elem_id="table", interactive=False)
            download = gr.File(label="predictions.csv", elem_id="csv")
            files.change(lambda ps: classify_batch(model, ps, work), files, [table, download],
                         api_name="classify_batch")
    return app


def check_host(host: str) -> None:
    """Say so when the page is reachable from other machines."""
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        raise CifarlabError(f"--host {host} is not an address of this machine") from None
    if not loopback:
        print(f"serving on {host}: anyone who can reach this machine on the network can use "
              "the model (the default, 127.0.0.1, is this machine only)")


def serve(source: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 7860,
          device: str = "auto", data_dir: str | None = None) -> None:
    """Serve the page until Ctrl-C."""
    check_host(host)
    model = load_predictor(source, device)
    with tempfile.TemporaryDirectory(prefix="cifarlab-demo-") as tmp:
        app = build_app(model, f"cifarlab: {Path(str(source)).name} ({model.config.model})",
                        Path(tmp), data_dir)
        try:
            app.launch(server_name=host, server_port=port, share=False, quiet=True,
                       allowed_paths=[tmp], prevent_thread_lock=True, theme=theme())
        except OSError as e:
            raise CifarlabError(f"cannot serve on {host}:{port} ({e}); is the port taken? "
                                "choose another with --port") from None
        print(f"demo of {source} on http://{host}:{port}/ (API: "
              f"http://{host}:{port}/gradio_api/info); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("demo stopped")
        finally:
            app.close()
