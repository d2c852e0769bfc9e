"""The figures of `compute_metrics`, the seed statistics and the bench comparison, each
against numbers worked out by hand."""

import json
import math

import pytest
import torch

from cifarlab.cli import main
from cifarlab.intervals import paired_difference, summary, t_quantile
from cifarlab.metrics import compute_metrics
from cifarlab.reporting.tables import format_calibration, format_per_class

# Four images, three classes; the logits are log-probabilities, so softmax gives these back.
PROBS = [[0.70, 0.20, 0.10],   # class a, right, confidence 0.70 (bin 11 of 15: (0.667, 0.733])
         [0.10, 0.65, 0.25],   # class b, right, 0.65 (bin 10: (0.600, 0.667])
         [0.50, 0.40, 0.10],   # class b, taken for a, 0.50 (bin 8: (0.467, 0.533])
         [0.15, 0.20, 0.65]]   # class c, right, 0.65 (bin 10)
LABELS = [0, 1, 1, 2]


@pytest.fixture
def m():
    return compute_metrics(torch.tensor(PROBS).log(), torch.tensor(LABELS), ["a", "b", "c"])


def test_accuracy_and_per_class_scores(m):
    assert m["top1"] == pytest.approx(75.0)
    assert m["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    # a: predicted twice, right once; b: predicted once, right, but one of two found
    s = m["class_scores"]
    assert (s["a"]["precision"], s["a"]["recall"], s["a"]["support"]) == (50.0, 100.0, 1)
    assert s["a"]["f1"] == pytest.approx(200 / 3)
    assert (s["b"]["precision"], s["b"]["recall"], s["b"]["support"]) == (100.0, 50.0, 2)
    assert s["b"]["f1"] == pytest.approx(200 / 3)
    assert s["c"] == {"precision": 100.0, "recall": 100.0, "f1": 100.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((200 / 3 + 200 / 3 + 100) / 3)
    assert m["per_class"] == {"a": 100.0, "b": 50.0, "c": 100.0}  # accuracy is recall


def test_calibration_figures(m):
    # ECE: bin (0.667, 0.733]: |1 - 0.70|; bin (0.6, 0.667]: |2 - 1.30|; bin (0.467, 0.533]:
    # |0 - 0.50|; summed over the 4 images
    assert m["ece"] == pytest.approx(100 * (0.30 + 0.70 + 0.50) / 4, abs=1e-4)
    nll = -(math.log(0.70) + math.log(0.65) + math.log(0.40) + math.log(0.65)) / 4
    assert m["nll"] == pytest.approx(nll, abs=1e-5)
    assert m["nll"] == pytest.approx(m["loss"])
    # Brier: 0.09+0.04+0.01, 0.01+0.1225+0.0625, 0.25+0.36+0.01, 0.0225+0.04+0.1225
    assert m["brier"] == pytest.approx((0.14 + 0.195 + 0.62 + 0.185) / 4, abs=1e-5)
    full = {i: b for i, b in enumerate(m["reliability"]) if b["count"]}
    assert sorted(full) == [7, 9, 10] and len(m["reliability"]) == 15
    assert full[9]["count"] == 2 and full[9]["accuracy"] == 100.0
    assert full[9]["confidence"] == pytest.approx(0.65)
    assert full[7]["accuracy"] == 0.0


def test_a_class_never_predicted_nor_present():
    m = compute_metrics(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]), ["a", "b", "c"])
    assert m["class_scores"]["b"] == {"precision": None, "recall": None, "f1": None,
                                      "support": 0}
    assert m["macro_f1"] == 100.0  # only a counts


def test_the_tables_show_precision_f1_and_calibration(m):
    table = format_per_class(m)
    assert "precision" in table and "F1" in table
    assert " 50.00%" in table.splitlines()[1] and "macro-F1 77.78%" in table
    assert format_calibration(m) == ("calibration: ECE 37.50% (15 bins), NLL 0.5336, "
                                     "Brier 0.2850")
    # metrics.json's names (test_ece, ...) read the same
    saved = {"evaluated_on": "test", "per_class": m["per_class"], "test_ece": m["ece"],
             "test_nll": m["nll"], "test_brier": m["brier"], "reliability": m["reliability"]}
    assert format_calibration(saved) == format_calibration(m)
    assert format_calibration({"per_class": {}}) == ""  # an older run's metrics


def test_student_t_quantiles_and_interval():
    # the 97.5% quantiles of the t tables
    for df, t in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423),
                   (31, 2.03951), (40, 2.02108), (60, 2.00030), (120, 1.97993)]:
        assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-5)
    with pytest.raises(ValueError, match="p = 0.975"):
        t_quantile(0.95, 5)
    s = summary([94.0, 94.2, 94.4])  # std 0.2, half width 4.3027 * 0.2 / sqrt(3)
    assert s["mean"] == pytest.approx(94.2) and s["std"] == pytest.approx(0.2)
    assert s["ci_high"] - s["mean"] == pytest.approx(4.3027 * 0.2 / math.sqrt(3), abs=1e-4)
    assert summary([5.0])["ci_low"] is None


def test_paired_difference_uses_the_common_seeds_only():
    d = paired_difference({0: 90.0, 1: 91.0, 2: 92.0}, {0: 90.5, 1: 91.7, 2: 92.3, 3: 99.0})
    assert d["seeds"] == [0, 1, 2]
    assert d["mean"] == pytest.approx(0.5) and d["std"] == pytest.approx(0.2)
    assert d["ci_low"] == pytest.approx(0.5 - 4.3027 * 0.2 / math.sqrt(3), abs=1e-4)


def _bench(path, runs):
    path.write_text(json.dumps({"runs": [dict(preset=p, seed=s, test_top1=a, wall_seconds=w)
                                         for p, s, a, w in runs]}))
    return str(path)


def test_compare_of_two_benches_pairs_by_seed(tmp_path, capsys):
    a = _bench(tmp_path / "a.json", [("fast", 0, 85.0, 40.0), ("fast", 1, 86.0, 42.0),
                                     ("fast", 2, 87.0, 41.0), ("90", 0, 90.0, 100.0)])
    b = _bench(tmp_path / "b.json", [("fast", 0, 85.5, 30.0), ("fast", 1, 86.7, 33.0),
                                     ("fast", 2, 87.3, 31.0)])
    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| `fast`"))
    assert "| 0, 1, 2 | 86.00% | 86.50% | +0.50 pt [+0.00, +1.00] |" in row
    assert "-9.67 s" in row
    assert "`90`" not in out  # measured by one file only


def test_compare_refuses_what_cannot_be_paired(tmp_path, capsys):
    a = _bench(tmp_path / "a.json", [("fast", 0, 85.0, 40.0)])
    b = _bench(tmp_path / "b.json", [("fast", 1, 85.0, 40.0)])
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main(["compare", a, b]) == 2
    assert "share no preset measured on the same seed" in capsys.readouterr().err
    assert main(["compare", a, str(tmp_path / "bad.json")]) == 2
    assert "not a results file of cifarlab bench" in capsys.readouterr().err
    assert main(["compare", a, str(tmp_path)]) == 2
    assert "not a mix" in capsys.readouterr().err
