"""Model packages on the Hugging Face hub: `hf-hub:ORG/NAME[@REVISION]` names a package
repository, fetched (or found in the local cache: HF_HUB_CACHE, HF_HUB_OFFLINE=1 without
network) through `huggingface_hub`. Pushing one is huggingface_hub's own command (docs). Also
where a source name is resolved: the bundled models' names (inference/bundled.py)."""

from __future__ import annotations

import os
from pathlib import Path

from cifarlab.errors import CheckpointError, first_line
from cifarlab.inference.bundled import bundled_name, bundled_path

PREFIX = "hf-hub:"


def resolve_source(source: str | os.PathLike) -> str | os.PathLike:
    """A local path as given; an `hf-hub:` name as the folder of its files in the cache; a
    bundled model's name (cifar10-94) as its folder in the installed package."""
    name = os.fspath(source)
    if name.startswith(PREFIX):
        return fetch_package(name[len(PREFIX):])
    return bundled_path(name) if bundled_name(name) else source


def fetch_package(name: str) -> Path:
    """The cached snapshot folder of hub repository `ORG/NAME[@REVISION]`."""
    repo, _, revision = name.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise CheckpointError(f"hf-hub:{name} is not a hub name; write hf-hub:ORG/NAME")
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError:
        raise CheckpointError("hf-hub: packages need huggingface_hub: pip install "
                              "huggingface_hub") from None
    try:
        path = snapshot_download(repo_id=repo, revision=revision or None)
    except Exception as e:  # noqa: BLE001 - network, missing repo, offline without cache
        first = first_line(e)
        raise CheckpointError(f"cannot fetch hf-hub:{name} ({type(e).__name__}: {first}); "
                              f"without network, fill the cache ({constants.HF_HUB_CACHE}) on "
                              "a machine with network and set HF_HUB_OFFLINE=1") from None
    return Path(path)
