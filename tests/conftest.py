"""Shared fixtures and helpers: tiny CIFAR datasets written in the official pickle format, tiny
settings (as a Config, as a Trainer, as command-line options), a run's rows, a local server."""

from __future__ import annotations

import os

# Under pytest-xdist each worker takes its share of the cores, it and the processes it starts
# (set before torch is imported): two workers of all cores each would fight over them.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_share)

# ruff: noqa: E402
import functools
import hashlib
import http.server
import io
import pickle
import shutil
import signal
import tarfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import cifarlab.jobs.bench as bench_module
from cifarlab.data import CIFAR10_CLASSES, DATASETS, load_data
from cifarlab.runs import Config, RunFolder, make_config
from cifarlab.runs.values import as_argv
from cifarlab.runtime import seed_everything
from cifarlab.training import Hook, Trainer, build_trainer, run_hooks

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium not installed at /usr/bin/chromium (Debian: "
    "apt-get install chromium); .ci/run installs it when it can")


def images_in_chromium(page_path: Path, screenshot: Path) -> list[dict]:
    """Open a page in headless Chromium: [{alt, ok}] for each image (ok: it loaded)."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        page = browser.new_page()
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        images = page.evaluate("() => Array.from(document.images).map(i => "
                               "({alt: i.alt, ok: i.complete && i.naturalWidth > 0}))")
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return images

# A model small enough to train in a second on the fake data, plain SGD at full resolution
# whatever the default preset uses (tests of Muon and of low-resolution epochs ask for them);
# the report is drawn only by the tests about it (it costs a few seconds).
TINY = dict(model="fastnet", model_args={"widths": [8, 16, 16], "whiten_width": 8},
            batch_size=32, val_size=50, lr=0.05, warmup=0, epochs=2, amp="off",
            tta="none", report=False, device="cpu", optimizer="sgd", weight_decay=1.33e-3,
            whiten_bias_share=0.3, low_res_epochs=0)


def tiny_config(data: Path, run_dir: Path | None = None, **kw: Any) -> Config:
    """TINY settings (on the `fast` preset) for the dataset in `data`, changed by `kw`."""
    where = {"data_dir": str(data), **({"run_dir": str(run_dir)} if run_dir else {})}
    return make_config("fast", **{**TINY, **where, **kw})


def tiny_trainer(data: Path, **kw: Any) -> Trainer:
    """A Trainer of TINY settings, built as a training run builds one (seeded, the settings
    resolved), on the CPU; nothing is written."""
    cfg = tiny_config(data, **kw)
    splits = load_data(cfg.dataset, cfg.data_folder(), download=cfg.download,
                       val_size=cfg.val_size, split_seed=cfg.split_seed,
                       image_size=cfg.image_size)
    seed_everything(cfg.seed)
    return build_trainer(cfg.resolved(cfg.data_folder(), splits.stats), splits,
                         device=torch.device("cpu"))


def fit_in(trainer: Trainer, run_dir: Path, *hooks: Hook) -> dict:
    """Train a Trainer built by a test into a new run folder, as `cifarlab.train` does, with a
    run's hooks and then `hooks`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunFolder(run_dir) as folder:
        folder.write_config(trainer.cfg)
        run = run_hooks(trainer.cfg, folder, hooks)
        try:
            return trainer.fit(run.hooks)
        finally:
            run.close()


class SignalAtEpochEnd(Hook):
    """Ctrl-C as an epoch ends: the run stops at step 0 of the next one."""

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        trainer.stop.signum = signal.SIGINT


def tiny_args(data: Path, run_dir: Path, **kw: Any) -> list[str]:
    """TINY settings as `cifarlab train` options, for the dataset in `data`."""
    return as_argv({**TINY, "data_dir": str(data), "run_dir": str(run_dir), **kw})


def rows(run_dir: Path, timings: bool = False) -> list[dict[str, Any]]:
    """A run's metrics.csv rows, without the timing columns unless `timings`."""
    return [{k: v for k, v in row.items() if timings or "seconds" not in k}
            for row in RunFolder(run_dir).rows()]


def fake_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of 3072 uint8 pixels whose mean colour depends on the class: learnable in a few
    steps, yet noisy enough that a model must actually fit them."""
    hues = np.linspace(0, 1, 10, endpoint=False)
    base = np.stack([np.sin(2 * np.pi * (hues + k / 3)) for k in range(3)], 1) * 80 + 128
    pixels = base[labels % 10][:, :, None] + rng.normal(0, 40, (len(labels), 3, 1024))
    return np.clip(pixels, 0, 255).astype(np.uint8).reshape(len(labels), 3072)


def write_fake_cifar(root: Path, dataset: str = "cifar10", per_file: int = 60,
                     test_size: int = 100, seed: int = 0) -> Path:
    """Write DATASET's official python layout under root; returns the dataset folder."""
    spec = DATASETS[dataset]
    rng = np.random.default_rng(seed)
    folder = root / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [(f, per_file) for f in spec.train_files] + [(spec.test_files[0], test_size)]:
        labels = np.arange(n) % spec.num_classes
        rng.shuffle(labels)
        batch = {"batch_label": name, spec.label_key: labels.tolist(),
                 "data": fake_images(labels, rng),
                 "filenames": [f"{name}_{i:05d}.png" for i in range(n)]}
        if dataset == "cifar100":
            batch["coarse_labels"] = (labels // 5).tolist()
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = (list(CIFAR10_CLASSES) if dataset == "cifar10"
             else [f"class{i}" for i in range(spec.num_classes)])
    (folder / spec.meta_file).write_bytes(pickle.dumps({spec.meta_key: names}, protocol=2))
    return folder


def make_tarball(folder: Path, out: Path) -> str:
    """Pack `folder` as the official tarball does (top-level folder inside); returns its MD5."""
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return hashlib.md5(out.read_bytes()).hexdigest()


def serve_cifar_tarball(tmp_path: Path, www: Path) -> str:
    """A fake CIFAR-10 as the official tarball in `www` (served by `http_server`); its MD5."""
    folder = write_fake_cifar(tmp_path / "src")
    return make_tarball(folder, www / "cifar-10-python.tar.gz")


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"x", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


@pytest.fixture(autouse=True)
def quick_peak_measurement(monkeypatch):
    """`cifarlab bench` times matrix products for seconds before and after its runs; a
    fraction of one is enough to test what it does with the rate."""
    monkeypatch.setattr(bench_module, "PEAK_SECONDS", 0.05)


@pytest.fixture
def fake_data(tmp_path: Path) -> Path:
    """A data dir holding a tiny CIFAR-10 (300 train, 100 test images)."""
    root = tmp_path / "data"
    write_fake_cifar(root)
    return root


@pytest.fixture(scope="session")
def bigger_data(tmp_path_factory) -> Path:
    """900 training images, 100 test images: enough steps per epoch to stop a process in the
    middle of one, or to share an epoch between processes."""
    root = tmp_path_factory.mktemp("bigger-data")
    write_fake_cifar(root, per_file=200)
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One finished TINY run on fake data, with its report; shared, so treat it as read-only."""
    from cifarlab import train

    root = tmp_path_factory.mktemp("trained")
    write_fake_cifar(root / "data")
    train(data_dir=str(root / "data"), run_dir=str(root / "run"), quiet=True,
          **{**TINY, "epochs": 3, "report": True})
    return root / "run"


@pytest.fixture
def http_server(tmp_path: Path):
    """Serves tmp_path/www on 127.0.0.1; yields (base_url, folder)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www
    server.shutdown()
    server.server_close()


def _real_data() -> Path:
    if not (REAL_DATA / "cifar-10-batches-py" / "batches.meta").is_file():
        pytest.skip(f"real CIFAR-10 not found at {REAL_DATA}/cifar-10-batches-py (the shared "
                    "read-only copy beside the checkout)")
    return REAL_DATA


@pytest.fixture
def real_data() -> Path:
    return _real_data()


@pytest.fixture(scope="session")
def real_fast_run(tmp_path_factory) -> tuple[Path, dict]:
    """The default preset trained once per test session on the real CIFAR-10 (a few minutes
    on one thread): its run folder and metrics; shared, so treat it as read-only. Once also
    across xdist workers: the first to come trains it under a file lock in the folder the
    workers share, the others read it."""
    from filelock import FileLock  # torch's own dependency

    from cifarlab import train

    data = _real_data()
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this session's
    run = shared / "real-fast-run"
    with FileLock(str(shared / "real-fast-run.lock")):
        if not RunFolder(run).finished:
            shutil.rmtree(run, ignore_errors=True)
            train(preset="fast", data_dir=str(data), run_dir=str(run), quiet=True)
    return run, RunFolder(run).metrics()


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server on 127.0.0.1: the one .ci/run starts (CIFARLAB_TEST_POSTGRES), else a
    throwaway cluster of Debian's `postgresql` started here (as the postgres user when the
    tests run as root); skipped without it."""
    import shutil
    import socket
    import subprocess
    import tempfile

    pytest.importorskip("psycopg", reason="the postgres extra (in dev) gives the driver")
    if os.environ.get("CIFARLAB_TEST_POSTGRES"):  # the server .ci/run started
        yield os.environ["CIFARLAB_TEST_POSTGRES"]
        return
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not bins:
        pytest.skip("PostgreSQL not installed (Debian: apt-get install postgresql)")
    bindir = bins[-1].parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="cifarlab-pg-"))  # not under pytest's 0700 folders
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run([*as_postgres, *map(str, cmd)], check=True,  # noqa: E731
                                      capture_output=True, text=True, timeout=120)
    run(bindir / "initdb", "-D", root / "data", "-A", "trust", "-U", "cifarlab")
    run(bindir / "pg_ctl", "-D", root / "data", "-l", root / "log", "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    try:
        run(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "cifarlab", "tune")
        yield f"postgresql://cifarlab:secret@127.0.0.1:{port}/tune"
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
