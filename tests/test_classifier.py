"""The one inference path (models/classifier.py): test-time views, selective views for the
least sure images, batched prediction."""

import pytest
import torch

from cifarlab.models import Classifier, create_model, predict_logits, tta_logits


@pytest.fixture
def net():
    torch.manual_seed(0)
    return create_model("fastnet", widths=(8, 16, 16), whiten_width=8).eval()


def test_test_time_views(net):
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        plain, flip = tta_logits(net, x), tta_logits(net, x, "flip")
        both = tta_logits(net, x, "flip-translate")
        assert torch.allclose(flip, 0.5 * (net(x) + net(x.flip(3))))
        symmetric = torch.cat([x[..., :16], x[..., :16].flip(3)], 3)  # a mirror-symmetric image
        assert torch.allclose(tta_logits(net, symmetric, "flip"), net(symmetric), atol=1e-5)
    assert both.shape == plain.shape and not torch.allclose(both, flip)
    calls = []
    net.register_forward_hook(lambda mod, inp, out: calls.append(len(inp[0])))
    predict_logits(Classifier(net, (0.5,) * 3, (0.25,) * 3, list("abcdefghij"),
                              tta="flip-translate"), torch.zeros(7, 3, 32, 32, dtype=torch.uint8))
    assert calls == [7] * 6  # six views


def test_selective_tta_gives_the_views_to_the_least_sure_share_only():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)).eval()
    x = torch.randn(10, 3, 8, 8)
    with torch.no_grad():
        plain, full = model(x), tta_logits(model, x, "flip-translate")
        half = tta_logits(model, x, "flip-translate", share=0.5)
        unsure = plain.softmax(1).amax(1).argsort()[:5]  # the five least sure images
        sure = torch.ones(10, dtype=torch.bool)
        sure[unsure] = False
        assert torch.allclose(half[unsure], full[unsure], atol=1e-6)
        assert torch.equal(half[sure], plain[sure]) and not torch.allclose(half, plain)
        assert torch.allclose(tta_logits(model, x, "flip", share=1.0),
                              tta_logits(model, x, "flip"))
        assert torch.equal(tta_logits(model, x, "flip", share=0.0), plain)
        one = tta_logits(model, x[:1], "flip", share=0.2)  # ceil: a lone image gets the views
        assert torch.allclose(one, tta_logits(model, x[:1], "flip"))
    calls = []
    model.register_forward_hook(lambda mod, inp, out: calls.append(len(inp[0])))
    tta_logits(model, x, "flip-translate", share=0.2)
    assert calls == [10] + [2] * 5  # one view for all, the other five views for two images


def test_the_classifier_normalises_inside_and_resizes_to_its_size(net):
    c = Classifier(net, (0.5,) * 3, (0.25,) * 3, list("abcdefghij"), image_size=32)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(c(x), net((x - 0.5) / 0.25))
        big = torch.nn.functional.interpolate(x, size=(64, 64), mode="nearest")
        assert c(big).shape == (3, 10)  # resized to the network's 32 pixels first
    with pytest.raises(ValueError, match="tta must be one of"):
        Classifier(net, (0.5,) * 3, (0.25,) * 3, list("abcdefghij"), tta="mirror")


def test_predict_logits_restores_train_mode_after_an_error(net):
    c = Classifier(net, (0.5,) * 3, (0.25,) * 3, list("abcdefghij")).train()

    def fail(mod, inp):
        raise RuntimeError("boom")

    hook = net.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        predict_logits(c, torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    hook.remove()
    assert c.training and net.training
