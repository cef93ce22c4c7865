"""No Hugging Face Hub access while a local dataset is read (the library's and the scripts' loaders).

Standard library only at import time: `datasets` and `huggingface_hub` load inside the block.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@contextlib.contextmanager
def offline_if_local(root: Path | None) -> Iterator[None]:
    """Forbid Hugging Face Hub access inside the block when the dataset is local (`root` given).

    Scoped rather than process-wide, so that a training run on a local dataset can still push its
    policy at the end when asked to. `huggingface_hub` and `datasets` read their flags at import
    time, so their module constants are switched as well as the environment.
    """
    if root is None:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved_env = {name: os.environ.get(name) for name in _OFFLINE_VARIABLES}
    saved = (
        huggingface_hub.constants.HF_HUB_OFFLINE,
        datasets.config.HF_HUB_OFFLINE,
        datasets.config.HF_DATASETS_OFFLINE,
    )
    os.environ.update(dict.fromkeys(_OFFLINE_VARIABLES, "1"))
    huggingface_hub.constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        huggingface_hub.constants.HF_HUB_OFFLINE = saved[0]
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved[1:]
