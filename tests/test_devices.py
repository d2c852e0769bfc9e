"""Every machine kind, tested on this one: the precision each kind computes in (CPUs with and
without native bf16, GPUs before and after Ampere), Apple's GPUs without float64, a run resumed
on another kind of device, and a training step free of host syncs on a GPU."""

import pytest
import torch

import cifarlab.data.augment as augment_module
import cifarlab.training.muon as muon_module
from cifarlab.models import create_model
from cifarlab.runs import make_config
from cifarlab.runtime import amp_dtype, compute_dtype, cpu_has_native_bf16
from cifarlab.training.state import TrainRandom
from conftest import tiny_trainer

CPU = torch.device("cpu")
pytestmark = pytest.mark.cpu_kinds  # all of them run again with the float32 path forced


@pytest.mark.parametrize("env, native", [
    ({"CIFARLAB_NATIVE_BF16": "0"}, False),
    ({"CIFARLAB_NATIVE_BF16": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}, True),  # the override wins
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
    ({"ONEDNN_MAX_CPU_ISA": "avx512_core_vnni"}, False),
])
def test_a_cpu_can_be_told_it_has_no_native_bf16(monkeypatch, env, native):
    """So that the float32 path of CPUs without native bf16 (most laptops) runs on any x86
    machine: `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 CIFARLAB_NATIVE_BF16=0`."""
    for name in ("CIFARLAB_NATIVE_BF16", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cpu_has_native_bf16() is native
    assert compute_dtype("auto", CPU) == (torch.bfloat16 if native else torch.float32)
    assert amp_dtype("bf16", CPU) == torch.bfloat16  # asked for, it is given


@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                               ((8, 0), torch.bfloat16),
                                               ((9, 0), torch.bfloat16)])
def test_gpus_before_ampere_train_in_fp16(monkeypatch, capability, dtype):
    """A T4 (7.5) or V100 (7.0) emulates bf16 (torch.cuda.is_bf16_supported says yes) and
    cuDNN has no bf16 convolutions there: fp16 with a gradient scaler instead."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert amp_dtype("auto", torch.device("cuda")) == dtype


def test_the_whitening_is_solved_on_the_cpu_in_float64(monkeypatch):
    """Apple's MPS has no float64 ("Cannot convert a MPS Tensor to float64"): the one-off
    eigendecomposition of fastnet's whitening layer runs on the CPU in float64, whatever the
    device, without calling .double() on the device's tensor."""
    seen = []
    eigh = torch.linalg.eigh

    def recording_eigh(a):
        seen.append((a.device.type, a.dtype))
        return eigh(a)

    def no_float64(self):
        raise TypeError("Cannot convert a MPS Tensor to float64 dtype")

    monkeypatch.setattr(torch.linalg, "eigh", recording_eigh)
    monkeypatch.setattr(torch.Tensor, "double", no_float64)
    model = create_model("fastnet", 10, widths=[8, 16, 16], whiten_width=8)
    model.init_from_data(torch.randn(20, 3, 32, 32))
    assert seen == [("cpu", torch.float64)] and model.whiten.weight.dtype == torch.float32
    assert torch.isfinite(model.whiten.weight).all()


def test_a_run_saved_on_another_device_continues_with_a_fresh_stream(fake_data):
    """A checkpoint's augmentation generator from a GPU cannot seed a CPU generator (nor the
    other way): the resumed run says so and draws a reproducible stream of its own seed; its
    other random states (data order, global generators) continue as saved."""
    saved = tiny_trainer(fake_data).state_dict()
    saved["rng"]["device"] = "cuda"
    gpu_state = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state
    saved["rng"]["generators"]["aug"] = gpu_state
    saved["ranks"][0]["aug"] = gpu_state
    streams = []
    for _ in range(2):
        t = tiny_trainer(fake_data)
        t.load_state_dict(saved)
        assert any("saved on cuda and continues on cpu" in note for note in t.notes)
        streams.append(torch.rand(4, generator=t.random.aug))
    assert torch.equal(*streams)
    same = tiny_trainer(fake_data)
    same.load_state_dict(tiny_trainer(fake_data).state_dict())
    assert same.notes == []  # the same kind of device: nothing to say


def test_a_checkpoint_of_more_gpus_than_the_machine_has_resumes(monkeypatch, fake_data):
    """torch.cuda.set_rng_state_all raises IndexError when the checkpoint saved more GPUs'
    states than this machine has: each GPU present takes its own."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, i: restored.append(i))
    random = TrainRandom(0, 0, CPU)
    state = random.state_dict()
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 4
    random.load_state_dict(state)
    assert restored == [0]


SYNCS = ("item", "tolist", "__bool__", "__int__", "__float__")


@pytest.mark.parametrize("settings", [
    dict(optimizer="muon", ema_decay=0.9, micro_batch=11),
    dict(color_jitter=(0.2, 0.2, 0.2, 0.1), cutout=8, rotation=10.0, crop_padding=4),
])
def test_a_step_reads_nothing_back_from_a_gpu(monkeypatch, fake_data, settings):
    """Each .item(), .tolist() or bool() of a device tensor makes a GPU wait for every kernel
    queued before it. The step is run here as on a GPU (the CPU's shortcuts, which read values
    back, turned off) and every such read is counted: none."""
    t = tiny_trainer(fake_data, **settings)
    model = t.nets.train_model
    images, labels = t.data.train_images[:32], t.data.train_labels[:32]
    t.step(images, labels, None, model)  # warm-up: lazy state, first-call checks
    for module in (augment_module, muon_module):
        monkeypatch.setattr(module, "host_reads_are_free", lambda device: False)
    reads = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original):
            reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    for _ in range(3):
        t.step(images, labels, None, model)
    monkeypatch.undo()
    assert reads == []


def test_gpus_take_the_record_batch_whole():
    """`94` and `95` cut their batches of 2,000 into pieces for the CPU's memory; on a GPU
    (and for BatchNorm's statistics) the step sees the whole batch, unless --micro-batch says
    otherwise."""
    cfg = make_config("94")
    assert cfg.pieces_of("cpu") == 500 and cfg.pieces_of("cuda") is None
    assert make_config("94", micro_batch=250).pieces_of("cuda") == 250
    assert make_config("fast").pieces_of("cpu") is None


def test_a_run_computes_in_the_precision_of_this_cpus_kind(fake_data, tmp_path):
    """The default preset's precision (--amp auto) is this CPU's: bf16 where it is native,
    float32 elsewhere (and on the emulated float32 path of .ci/run); metrics.json says which."""
    from cifarlab import train
    from cifarlab.runtime import precision_name
    from conftest import TINY

    settings = {**TINY, "amp": "auto", "epochs": 1}
    metrics = train(data_dir=str(fake_data), run_dir=str(tmp_path / "run"), quiet=True,
                    **settings)
    assert metrics["precision"] == precision_name(compute_dtype("auto", CPU))
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"precision {metrics['precision']}" in log
