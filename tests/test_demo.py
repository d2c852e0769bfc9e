"""`cifarlab demo`: the Gradio page and its HTTP API give what `cifarlab predict` gives, bad
files get predict's messages, the page works in headless Chromium, Ctrl-C stops it cleanly."""

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarlab.inference.predict import load_predictor, predict_files
from conftest import CHROMIUM, needs_chromium

gradio_client = pytest.importorskip("gradio_client", reason="the demo needs the demo extra")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serving(tmp_path):
    """Serve a run's page on a free port in this process; yields (url, run)."""
    from cifarlab.jobs.demo import build_app, theme

    apps = []

    def start(run, data_dir=None):
        port = free_port()
        work = tmp_path / f"work{len(apps)}"
        work.mkdir()
        app = build_app(load_predictor(run, "cpu"), "test", work, data_dir)
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                   quiet=True, allowed_paths=[str(work)], theme=theme())
        apps.append(app)
        return f"http://127.0.0.1:{port}/"

    yield start
    for app in apps:
        app.close()


def photos(folder, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"photo{i}.png"
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_the_api_gives_predicts_probabilities_and_messages(trained_run, serving, tmp_path):
    client = gradio_client.Client(serving(trained_run), verbose=False)
    photo, *_ = photos(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    label, view, heat, status = client.predict(gradio_client.handle_file(str(photo)),
                                               api_name="/classify")
    expected = next(predict_files(trained_run, [photo], device="cpu"))["top"]
    assert [(c["label"], c["confidence"]) for c in label["confidences"]] == \
        [(t["class"], t["probability"]) for t in expected]
    assert status.startswith(f"{expected[0]['class']} (") and "classified in" in status
    assert Image.open(view).size == (224, 224)  # 32 pixels, each drawn 7 wide
    assert Image.open(heat).size == (224, 224)  # the heatmap of the top class over the view
    error = next(predict_files(trained_run, [tmp_path / "broken.jpg"], device="cpu"))["error"]
    _, _, _, status = client.predict(gradio_client.handle_file(str(tmp_path / "broken.jpg")),
                                     api_name="/classify")
    assert status == f"cannot classify broken.jpg: {error}"
    table, csv_file = client.predict([gradio_client.handle_file(str(p)) for p in
                                      [*photos(tmp_path), tmp_path / "broken.jpg"]],
                                     api_name="/classify_batch")
    assert [row[0] for row in table["data"]] == ["photo0.png", "photo1.png", "photo2.png",
                                                 "broken.jpg"]
    assert table["data"][0][1] == expected[0]["class"] and table["data"][3][4] == error
    lines = Path(csv_file).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "file,class,probability,top-5,error" and len(lines) == 5


@needs_chromium
@pytest.mark.xdist_group("real_fast_run")  # beside test_real_data: one training
def test_the_page_classifies_a_real_photo_and_reports_a_broken_file(real_fast_run, real_data,
                                                                    serving, tmp_path):
    """A test-set photo the run never trained on, enlarged and saved as JPEG, dropped on the
    page: the class predict gives (and the truth); a broken file: predict's message."""
    import pickle

    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    run = real_fast_run[0]
    with open(real_data / "cifar-10-batches-py" / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    paths = []
    for i in range(10):
        path = tmp_path / f"{names[batch[b'labels'][i]]}-{i}.jpg"
        image = Image.fromarray(batch[b"data"][i].reshape(3, 32, 32).transpose(1, 2, 0))
        image.resize((128, 128), Image.BICUBIC).save(path, quality=92)
        paths.append(path)
    results = list(predict_files(run, paths, device="cpu"))
    right = [r for r in results if r["top"][0]["class"] == os.path.basename(r["file"])
             .split("-")[0]]
    assert len(right) >= 7  # the run is right on most of them, as its 86% says
    photo = max(right, key=lambda r: r["top"][0]["probability"])
    expected = photo["top"][0]["class"]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    url = serving(run, str(real_data))
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        page = browser.new_page()
        page.goto(url, wait_until="load")
        page.wait_for_selector("#image input[type=file]", state="attached", timeout=30000)
        assert "cat, test image 0" in page.content()  # the test set's images to pick
        page.set_input_files("#image input[type=file]", photo["file"])
        page.wait_for_function("() => document.querySelector('#status').innerText"
                               ".includes('classified in')", timeout=30000)
        assert page.inner_text("#status").startswith(f"{expected} (")
        assert expected in page.inner_text("#top5")
        page.set_input_files("#image input[type=file]", str(tmp_path / "broken.jpg"))
        page.wait_for_function("() => document.querySelector('#status').innerText"
                               ".includes('cannot classify')", timeout=30000)
        assert "not an image Pillow can read" in page.inner_text("#status")
        browser.close()


def test_the_command_serves_until_ctrl_c(trained_run, tmp_path):
    port = free_port()
    # faulthandler: a demo that does not stop dumps its threads' stacks when aborted below.
    proc = subprocess.Popen([sys.executable, "-m", "cifarlab", "demo", str(trained_run),
                             "--port", str(port), "--device", "cpu"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        line = ""
        while "Ctrl-C stops it" not in line:
            line = proc.stdout.readline()
            assert line, "the demo ended before serving"
        assert f"http://127.0.0.1:{port}/" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200 and b"gradio" in page.read().lower()
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            pytest.fail("Ctrl-C did not stop the demo in 60 s; where it was:\n"
                        + proc.communicate(timeout=30)[0][-6000:])
    finally:
        proc.kill()
    assert proc.returncode == 0 and "demo stopped" in out and "Traceback" not in out


def test_serving_beyond_this_machine_says_so(capsys):
    from cifarlab.jobs.demo import check_host

    check_host("127.0.0.1")
    assert capsys.readouterr().out == ""
    check_host("0.0.0.0")
    assert "anyone who can reach this machine" in capsys.readouterr().out
