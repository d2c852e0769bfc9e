"""Stage 1, data: from files to tensors. CIFAR-10/100 (found, downloaded and verified, parsed)
and folders of your own images, loaded as one `DataSplits` of uint8 tensors by `load_data`; the
pixel steps every network input goes through (`pixels`), and the batched augmentation of
training (`augment`)."""

from cifarlab.data.cifar import CIFAR10_CLASSES, DATASETS, default_data_dir, load_cifar
from cifarlab.data.load import DATASET_CHOICES, load_data
from cifarlab.data.splits import DataSplits, Stats, stratified_split

__all__ = ["CIFAR10_CLASSES", "DATASETS", "DATASET_CHOICES", "DataSplits", "Stats",
           "default_data_dir", "load_cifar", "load_data", "stratified_split"]
