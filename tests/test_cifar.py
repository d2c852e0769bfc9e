"""CIFAR-10/100 in the official python layout (data/cifar.py, data/splits.py): parsing, the
validation split, hostile and broken files, download from a local server, the real data."""

import dataclasses
import hashlib
import pickle

import numpy as np
import pytest
import torch

from cifarlab.data import DATASETS, load_cifar, stratified_split
from cifarlab.data.cifar import find_dataset
from cifarlab.errors import DataError
from conftest import serve_cifar_tarball, write_fake_cifar


def test_loads_official_layout(fake_data):
    d = load_cifar("cifar10", fake_data, download=False, val_size=50)
    assert d.train_images.shape == (250, 3, 32, 32) and d.train_images.dtype == torch.uint8
    assert d.val_images.shape == (50, 3, 32, 32) and d.test_images.shape == (100, 3, 32, 32)
    assert d.train_labels.dtype.itemsize == 8 and d.classes[3] == "cat"
    # The folder itself is accepted as data dir too.
    d2 = load_cifar("cifar10", fake_data / "cifar-10-batches-py", download=False, val_size=50)
    assert (d2.test_images == d.test_images).all()


def test_pixels_follow_the_official_row_layout(tmp_path):
    """Each row is the red, then green, then blue 32x32 plane."""
    folder = write_fake_cifar(tmp_path)
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="latin1")
    d = load_cifar("cifar10", tmp_path, download=False, val_size=0)
    row = batch["data"][7]
    assert (d.test_images[7, 1].numpy() == row[1024:2048].reshape(32, 32)).all()
    assert d.test_labels[7] == batch["labels"][7]


def test_cifar100_fine_labels(tmp_path):
    write_fake_cifar(tmp_path, "cifar100", per_file=300, test_size=200)
    d = load_cifar("cifar100", tmp_path, download=False, val_size=100)
    assert len(d.classes) == 100 and int(d.train_labels.max()) == 99


def test_stratified_split_is_balanced_seeded_and_disjoint():
    labels = np.repeat(np.arange(10), 100)
    tr, va = stratified_split(labels, 200, seed=3)
    assert len(va) == 200 and len(tr) == 800 and not set(tr) & set(va)
    assert (np.bincount(labels[va]) == 20).all()
    assert (stratified_split(labels, 200, seed=3)[1] == va).all()
    assert not (stratified_split(labels, 200, seed=4)[1] == va).all()
    assert len(stratified_split(labels, 0, 0)[1]) == 0


def test_missing_data_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found under"):
        find_dataset("cifar10", tmp_path, download_missing=False)


def test_corrupt_batch_file_names_the_file(fake_data):
    batch = fake_data / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(DataError, match="data_batch_3.*Delete"):
        load_cifar("cifar10", fake_data, download=False)


def test_pickle_that_calls_code_is_refused(fake_data, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (fake_data / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError, match="not allowed"):
        load_cifar("cifar10", fake_data, download=False)
    assert not marker.exists()


def test_labels_out_of_range_are_refused(fake_data):
    path = fake_data / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes(), encoding="latin1")
    batch["labels"][0] = 10
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="labels outside"):
        load_cifar("cifar10", fake_data, download=False)


def test_download_verify_extract_from_local_server(tmp_path, http_server, monkeypatch):
    base, www = http_server
    md5 = serve_cifar_tarball(tmp_path, www)
    spec = dataclasses.replace(DATASETS["cifar10"], url=f"{base}/cifar-10-python.tar.gz", md5=md5)
    monkeypatch.setitem(DATASETS, "cifar10", spec)
    root = tmp_path / "downloaded"
    d = load_cifar("cifar10", root, download=True, val_size=30)
    assert len(d.train_images) == 270 and len(d.test_images) == 100
    assert not list(root.glob("*.part")) and not list(root.glob("*.tar.gz"))
    # A second call finds the extracted copy and does not download again.
    (www / "cifar-10-python.tar.gz").unlink()
    assert len(load_cifar("cifar10", root, val_size=30).train_images) == 270


def test_mirror_environment_variable(tmp_path, http_server, monkeypatch):
    base, www = http_server
    md5 = serve_cifar_tarball(tmp_path, www)
    monkeypatch.setitem(DATASETS, "cifar10", dataclasses.replace(DATASETS["cifar10"], md5=md5))
    monkeypatch.setenv("CIFARLAB_MIRROR", base + "/")
    assert find_dataset("cifar10", tmp_path / "d").name == "cifar-10-batches-py"


def test_real_cifar10_content(real_data):
    """The shared copy parses to the documented content hash (pixels HWC + labels)."""
    d = load_cifar("cifar10", real_data, download=False, val_size=0)
    assert d.train_images.shape == (50000, 3, 32, 32) and d.test_labels[:3].tolist() == [3, 8, 8]
    x = d.test_images.permute(0, 2, 3, 1).contiguous().numpy()
    digest = hashlib.sha256(x.tobytes() + d.test_labels.numpy().astype(np.uint8).tobytes())
    assert digest.hexdigest() == \
        "8193b3fbce55bec361cd1b8fd4880cb1649832dc4d6de6da1e7a21847a4843aa"


