"""CIFAR-100 end to end on synthetic data in the official format: download from a local
server, verify, 100 fine-label classes, training, evaluation, the report's extremes."""

import dataclasses
import json
import re

from PIL import Image

from cifarlab import train
from cifarlab.cli import main
from cifarlab.data import DATASETS, load_cifar
from cifarlab.runs import open_checkpoint
from conftest import TINY, make_tarball, write_fake_cifar


def test_cifar100_downloads_trains_evaluates_and_reports(tmp_path, http_server, monkeypatch,
                                                        capsys):
    base, www = http_server
    folder = write_fake_cifar(tmp_path / "src", "cifar100", per_file=1000, test_size=300)
    md5 = make_tarball(folder, www / "cifar-100-python.tar.gz")
    spec = dataclasses.replace(DATASETS["cifar100"], url=f"{base}/cifar-100-python.tar.gz",
                               md5=md5)
    monkeypatch.setitem(DATASETS, "cifar100", spec)
    data_dir = tmp_path / "data"

    d = load_cifar("cifar100", data_dir, download=True, val_size=200)
    assert len(d.classes) == 100 and int(d.train_labels.max()) == 99  # fine labels
    assert (data_dir / "cifar-100-python" / "train").is_file()

    run = tmp_path / "run"
    m = train(dataset="cifar100", data_dir=str(data_dir), run_dir=str(run), quiet=True,
              **{**TINY, "val_size": 200, "report": True})
    assert len(m["per_class"]) == 100 and len(m["confusion"]) == 100
    assert "10 worst and 10 best of 100 classes" in (run / "train.log").read_text()
    with Image.open(run / "per_class.png") as img:
        assert img.height < 1500  # 20 bars, not 100
    # CIFAR-100 is normalised with its own statistics, not CIFAR-10's.
    assert open_checkpoint(run).config.mean == DATASETS["cifar100"].stats[0]
    # The report's table shows the same 20 classes as the log, not all 100.
    ranked = sorted(m["per_class"].items(), key=lambda t: t[1])
    extremes = [c for c, _ in ranked[:10] + ranked[-10:]]
    page = (run / "report.html").read_text()
    per_class_table = page.split("<h2>Per class")[1].split("</table>")[0]
    assert re.findall(r"<td>(class\d+)</td>", per_class_table) == extremes  # worst first
    assert per_class_table.count("<tr class=worst>") == 1

    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    table = re.findall(r"^(class\d+) ", out, re.MULTILINE)
    assert table == extremes  # the 10 worst, then the 10 best
    assert f"{ranked[0][0]}" in next(line for line in out.splitlines() if "<- worst" in line)
    assert "too many to print" in out and out.count("\n") < 40
    assert main(["evaluate", str(run), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["classes"]) == 100
