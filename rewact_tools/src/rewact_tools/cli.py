"""What every command-line program in `scripts/` shares: argument groups, the one-line error wrapper,
offline dataset loading (`rewact_tools.offline`), episode selection and checkpoint loading.

Scripts stay thin: they declare their flags with the helpers here, call library functions, and run
inside `run_cli`, which turns the expected kinds of bad input into `error: <message>` on stderr and
exit status 2 instead of a traceback (set `REWACT_TRACEBACK=1` to see the traceback anyway). This
module imports only the standard library at load time and scripts import torch and LeRobot after
parsing their arguments, so `--help` and usage errors do not wait for them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rewact_tools.distributed import (
    is_main_process,
    leave_the_reason_to_the_main_process,
    single_process_refusal,
)
from rewact_tools.offline import offline_if_local

if TYPE_CHECKING:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.policies.pretrained import PreTrainedPolicy

# LeRobot picks torchcodec by default, which cannot load without system FFmpeg libraries; PyAV
# bundles its own. Datasets stored as images ignore the setting.
VIDEO_BACKEND = "pyav"
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    KeyError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
EXIT_USER_ERROR = 2
# How pi*0.6 returns count episodes of unknown outcome, by flag value (None: raise).
UNKNOWN_OUTCOMES = {"error": None, "success": True, "failure": False}


class _OneLineTorchcodecWarning(logging.Filter):
    """Keeps only the last line of LeRobot's "torchcodec is installed but cannot be loaded" warning.

    LeRobot 0.6 logs the whole FFmpeg library search, tracebacks included, whenever a dataset or a
    training config is created on a machine without system FFmpeg libraries, then falls back to
    PyAV, which the scripts use anyway. A user would take the tracebacks for an error of ours; the
    last line says exactly what happened.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "torchcodec" in message and "\n" in message:
            record.msg, record.args = message.rstrip().splitlines()[-1], None
        return True


_TORCHCODEC_LOGGER = "lerobot.utils.import_utils"
_TORCHCODEC_FILTER = _OneLineTorchcodecWarning()


def quiet_torchcodec_fallback() -> None:
    """Shorten LeRobot's torchcodec fallback warning to one line (idempotent; imports nothing)."""
    logger = logging.getLogger(_TORCHCODEC_LOGGER)
    if _TORCHCODEC_FILTER not in logger.filters:
        logger.addFilter(_TORCHCODEC_FILTER)


class CliError(Exception):
    """Bad command-line input that the script detected itself."""


def run_command(command: Sequence[str | os.PathLike], env: Mapping[str, str] | None = None) -> None:
    """Print `command` as a shell line, then run it; a failure stops the caller (scripts that chain
    other commands show each step as a user could run it by hand)."""
    arguments = [str(part) for part in command]
    print(f"\n$ {shlex.join(arguments)}", flush=True)
    subprocess.run(arguments, check=True, env=None if env is None else dict(env))


def one_line(error: BaseException) -> str:
    """The error's message on one line (KeyError's repr quotes are dropped)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(message).split()) or type(error).__name__


def run_cli(
    main: Callable[[Sequence[str] | None], int | None],
    argv: Sequence[str] | None = None,
    multiprocess: bool = False,
) -> None:
    """Run `main(argv)` and exit: 0 on success, 2 with `error: <message>` on an expected error.

    Under a multi-process launch (torchrun, accelerate launch) a script that does not split its work
    (`multiprocess=False`) refuses to run, so no two processes write one output; one that does has
    its other processes' standard output silenced, so what it prints appears once.
    """
    quiet_torchcodec_fallback()
    script = Path(sys.argv[0]).name
    try:
        refusal = None if multiprocess else single_process_refusal(script)
        if refusal is not None:
            raise CliError(refusal)
        if not is_main_process():
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
        status = main(argv)
    except (CliError, *USER_ERRORS) as error:
        if os.environ.get("REWACT_TRACEBACK") == "1":
            raise
        if is_main_process():
            print(f"error: {one_line(error)}", file=sys.stderr)
        leave_the_reason_to_the_main_process()
        sys.exit(EXIT_USER_ERROR)
    sys.exit(status or 0)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the scripts' one-line error format for usage errors too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {message} (see {self.prog} --help)\n")


def make_parser(doc: str | None) -> ArgumentParser:
    """A parser whose --help shows the script's docstring as written."""
    return ArgumentParser(
        description=doc,
        epilog="Errors print one line; set REWACT_TRACEBACK=1 for the full traceback.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def check_local_dataset(root: str | Path) -> Path:
    """`root` as a Path, after checking it holds a LeRobot dataset (LeRobot would otherwise create the
    folder and try to download into it)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CliError(f"dataset root {root} does not exist or is not a folder")
    if not (root / "meta" / "info.json").is_file():
        raise CliError(f"{root} is not a LeRobot dataset: {root / 'meta' / 'info.json'} is missing")
    return root


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dataset")
    group.add_argument("--dataset-repo-id", required=True, help="dataset repo id, e.g. lerobot/pusht")
    group.add_argument(
        "--dataset-root",
        type=Path,
        help="local dataset folder; when given the Hugging Face Hub is never contacted",
    )


def add_outcomes_argument(container: argparse._ActionsContainer) -> None:
    """`--outcomes PATH`: episode outcomes from a file instead of the dataset's."""
    container.add_argument(
        "--outcomes",
        type=Path,
        metavar="PATH",
        help="episode outcomes from this file (robocandywrapper's outcomes.json format) instead of the dataset's",
    )


def add_episodes_of_dataset_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The dataset and which of its episodes to `what` (`selected_episodes` reads them)."""
    add_dataset_arguments(parser)
    add_episode_arguments(parser, what)


def add_media_arguments(parser: argparse.ArgumentParser, output_dir: str, without_video: str) -> None:
    """`--output-dir` (default `output_dir`) and `--no-video` (then only `without_video` are written)."""
    parser.add_argument("--output-dir", type=Path, default=Path(output_dir), help="where files go")
    parser.add_argument("--no-video", action="store_true", help=f"write the {without_video} only")


def add_episode_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--episode-id",
        type=int,
        nargs="+",
        metavar="EPISODE",
        help=f"episode(s) to {what}, e.g. --episode-id 3 or --episode-id 3 7 12 (default: every episode)",
    )


def add_label_arguments(parser: argparse.ArgumentParser, progress: bool = True) -> None:
    """The value range of reward labels and, with `progress`, where linear progress labels ramp."""
    group = parser.add_argument_group("labels")
    group.add_argument("--value-min", type=float, default=0.0, help="lowest label value (default 0)")
    group.add_argument("--value-max", type=float, default=1.0, help="highest label value (default 1)")
    if progress:
        group.add_argument(
            "--progress-start", type=float, default=0.05, help="where linear progress leaves 0 (default 0.05)"
        )
        group.add_argument(
            "--progress-end", type=float, default=0.95, help="where linear progress reaches 1 (default 0.95)"
        )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


STALL_WINDOW = "stall"
"""A pre-takeover window given as the rollouts' recorded stall patience instead of in frames."""


def window_frames(text: str) -> int | str:
    """A pre-takeover window: a number of frames >= 0, or `STALL_WINDOW`."""
    if text == STALL_WINDOW:
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of frames >= 0 or {STALL_WINDOW!r}, got {text!r}")
    return value


def stall_patience(root: str | Path) -> int | None:
    """The stall patience the rollout dataset at `root` records, for `--pre-takeover-window stall`
    (None when no round corrected on stalls); a missing or ambiguous record is a user error."""
    from rewact_tools.rollouts.recorder import recorded_stall_patience

    try:
        return recorded_stall_patience(root)
    except (FileNotFoundError, ValueError) as error:
        raise CliError(f"--pre-takeover-window {STALL_WINDOW}: {error}") from error


POLICY_PATH_HELP = (
    "checkpoint folder: a pretrained_model folder, a checkpoints/<step> folder or a training run"
)


def add_policy_arguments(
    parser: argparse.ArgumentParser,
    batch_size: int = 64,
    batch_help: str = "frames per inference batch",
    path_help: str | None = None,
) -> argparse._ArgumentGroup:
    """`--policy-path` (required unless the script says when it is not, in `path_help`), `--device`
    and `--batch-size` (what one batch is: `batch_help`); returns the group, for a script's own
    policy flags."""
    group = parser.add_argument_group("policy")
    group.add_argument(
        "--policy-path",
        type=Path,
        required=path_help is None,
        help=POLICY_PATH_HELP if path_help is None else f"{POLICY_PATH_HELP}; {path_help}",
    )
    group.add_argument("--device", default="cpu", help="torch device for inference (default: cpu)")
    group.add_argument(
        "--batch-size", type=positive_int, default=batch_size, help=f"{batch_help} (default: {batch_size})"
    )
    return group


def load_metadata(repo_id: str, root: Path | None) -> LeRobotDatasetMetadata:
    """Dataset metadata; from `root` only (offline) when it is given, else from the cache or the hub."""
    if root is not None:
        root = check_local_dataset(root)
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    with offline_if_local(root):
        return LeRobotDatasetMetadata(repo_id, root=root)


def select_episodes(meta: LeRobotDatasetMetadata, requested: Sequence[int] | None) -> list[int]:
    """The requested episodes (every episode when None), each checked to exist, duplicates dropped."""
    available = sorted(int(episode) for episode in meta.episodes["episode_index"])
    if requested is None:
        return available
    known = set(available)
    unknown = [episode for episode in requested if episode not in known]
    if unknown:
        raise CliError(
            f"dataset {meta.repo_id} has no episode(s) {unknown}; it has {len(available)} episodes "
            f"({available[0]}..{available[-1]})"
        )
    return list(dict.fromkeys(requested))


def selected_episodes(args: argparse.Namespace) -> tuple[LeRobotDatasetMetadata, list[int]]:
    """The metadata of the dataset the arguments name and the episodes they select
    (`add_episodes_of_dataset_arguments`)."""
    meta = load_metadata(args.dataset_repo_id, args.dataset_root)
    return meta, select_episodes(meta, args.episode_id)


def reward_model_values(
    args: argparse.Namespace, meta: LeRobotDatasetMetadata, episodes: Sequence[int]
) -> tuple[PreTrainedPolicy, LeRobotDataset, Any]:
    """The reward model at `--policy-path`, the selected episodes as a dataset, and the model's value
    of each of their frames (`compute_values`' table), batched as `add_policy_arguments` says."""
    from rewact_tools.values import compute_values

    policy, preprocessor = load_reward_model(args.policy_path, args.device)
    dataset = load_dataset(args.dataset_repo_id, args.dataset_root, episodes, meta=meta)
    values = compute_values(policy, dataset, args.batch_size, device=args.device, preprocessor=preprocessor)
    return policy, dataset, values


def load_dataset(
    repo_id: str,
    root: Path | None,
    episodes: Sequence[int] | None = None,
    meta: LeRobotDatasetMetadata | None = None,
) -> LeRobotDataset:
    """A `LeRobotDataset` of the given episodes (all when None), video decoded with PyAV.

    With a `root` nothing is fetched from the hub; unknown episodes raise before LeRobot would try to
    download them.
    """
    meta = meta if meta is not None else load_metadata(repo_id, root)
    if episodes is not None:
        episodes = select_episodes(meta, episodes)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    with offline_if_local(root):
        return LeRobotDataset(repo_id, root=meta.root, episodes=episodes, video_backend=VIDEO_BACKEND)


def checkpoint_model_dir(path: Path) -> Path:
    """The `pretrained_model` folder for a path to it, to a `checkpoints/<step>` folder, or to a run."""
    path = Path(path).expanduser()
    candidates = [path, path / "pretrained_model", path / "checkpoints" / "last" / "pretrained_model"]
    for candidate in candidates:
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    if not path.exists():
        raise CliError(f"policy path {path} does not exist")
    raise CliError(
        f"{path} holds no policy checkpoint (config.json and model.safetensors in it, in "
        "pretrained_model/ or in checkpoints/last/pretrained_model/)"
    )


def load_policy(path: Path, device: str) -> PreTrainedPolicy:
    """Load a LeRobot policy checkpoint (any plugin type) from a local folder for inference on `device`."""
    model_dir = checkpoint_model_dir(path)
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    try:
        config_type = json.loads((model_dir / "config.json").read_text())["type"]
    except (json.JSONDecodeError, KeyError) as error:
        raise CliError(
            f"{model_dir / 'config.json'} is not a LeRobot policy config: {one_line(error)}"
        ) from error
    config = PreTrainedConfig.from_pretrained(model_dir)
    config.device = device
    policy = get_policy_class(config_type).from_pretrained(model_dir, config=config)
    policy.eval()
    return policy


def load_policy_with_processors(path: Path, device: str) -> tuple[PreTrainedPolicy, Any, Any]:
    """A policy checkpoint of any type with the pre- and post-processor saved beside it, on `device`,
    loaded as `lerobot-eval` loads them."""
    model_dir = checkpoint_model_dir(path)
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.utils.constants import POLICY_POSTPROCESSOR_DEFAULT_NAME, POLICY_PREPROCESSOR_DEFAULT_NAME

    names = [f"{name}.json" for name in (POLICY_PREPROCESSOR_DEFAULT_NAME, POLICY_POSTPROCESSOR_DEFAULT_NAME)]
    missing = [name for name in names if not (model_dir / name).is_file()]
    if missing:
        raise CliError(
            f"{model_dir} has no saved processors ({', '.join(missing)} missing); LeRobot writes them "
            "with every checkpoint since 0.4"
        )
    policy = load_policy(model_dir, device)
    preprocessor, postprocessor = make_pre_post_processors(
        policy.config,
        pretrained_path=str(model_dir),
        preprocessor_overrides={"device_processor": {"device": device}},
    )
    return policy, preprocessor, postprocessor


def load_reward_model(path: Path, device: str) -> tuple[PreTrainedPolicy, Any]:
    """A RewACT checkpoint and the pre-processor saved with it (training's normalisation)."""
    policy = load_policy(path, device)
    if not callable(getattr(policy, "predict_value", None)):
        raise CliError(
            f"the policy at {path} is a {policy.name!r} policy without a value head; pass a RewACT checkpoint"
        )
    from rewact_tools.processors import make_pre_post_processors

    preprocessor, _ = make_pre_post_processors(policy.config, pretrained_path=checkpoint_model_dir(path))
    return policy, preprocessor
