"""Shared fixtures. Tests never reach the Hugging Face Hub."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import shutil  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402

from local_datasets import make_local_dataset  # noqa: E402

# Under pytest-xdist the workers share the cores: each takes its share of torch threads (one each
# on two cores) instead of every worker taking all of them.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


# Unmarked tests: most run in well under a second.
UNMARKED_TEST_SECONDS = 0.25


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest test files first. Under `--dist loadfile` a worker that is free takes the next whole
    file, so the long end-to-end files start at once, the short ones fill the gaps, and the workers
    finish together (on two cores, in the order collected, one worker ran the RECAP rounds alone for
    the last minute and a half). A test's `duration` marker gives its rough seconds on two cores."""
    cost: dict[Path, float] = {}
    for item in items:
        marker = item.get_closest_marker("duration")
        cost[item.path] = cost.get(item.path, 0.0) + (marker.args[0] if marker else UNMARKED_TEST_SECONDS)
    items.sort(key=lambda item: -cost[item.path])  # stable: a file's tests keep their order


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def image_dataset(tmp_path_factory):
    """A three-episode dataset with one 32x32 camera, 2-D state and 2-D action."""
    return make_local_dataset(tmp_path_factory.mktemp("datasets") / "image")


@pytest.fixture(scope="session")
def env_state_dataset(tmp_path_factory):
    """A camera-less dataset: 4-D environment state, 3-D state, 3-D action."""
    return make_local_dataset(
        tmp_path_factory.mktemp("datasets") / "env",
        cameras=(),
        state_dim=3,
        action_dim=3,
        env_state_dim=4,
        episode_lengths=(20, 24, 18, 22),
    )


@pytest.fixture(scope="session")
def build_once(tmp_path_factory, worker_id) -> Callable[[str, Callable[[Path], None]], Path]:
    """`build_once(name, build)`: a folder that `build(folder)` filled, built once per test run
    however many xdist workers ask for it (the others wait for it) and shared by them, so read only.
    For costly artefacts such as a checkpoint trained by a `lerobot-train` subprocess."""
    base = tmp_path_factory.getbasetemp()
    shared = (base if worker_id == "master" else base.parent) / "built_once"
    shared.mkdir(exist_ok=True)

    def get(name: str, build: Callable[[Path], None]) -> Path:
        folder = shared / name
        with FileLock(f"{folder}.lock"):
            if not (folder / ".built").is_file():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                build(folder)
                (folder / ".built").touch()
        return folder

    return get
