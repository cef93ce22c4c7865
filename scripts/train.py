#!/usr/bin/env python
"""Train RewACT or ACTvantage on one or several LeRobot datasets with robocandywrapper plugins.

Takes every lerobot-train flag (`lerobot-train --help`), for example:
    python scripts/train.py --dataset.repo_id=local/pusht --dataset.root=data/pusht \\
        --dataset.episodes=[0,1,2] --policy.type=rewact --policy.repo_id=me/rewact \\
        --output_dir=outputs/rewact --job_name=rewact --batch_size=32 --env_eval_freq=-1 \\
        --log_freq=50 --save_freq=1000 --steps=10000
The evaluation period may be spelt --eval_freq (LeRobot 0.4) or --env_eval_freq (0.6) on either
version. Sample weighting (RA-BC) and reward models train with lerobot-train itself.
Several datasets, each with its own root, as comma-separated lists (same order):
    --dataset.repo_id=local/a,local/b --dataset.root=data/a,data/b
--dataset.episodes then applies to each of them. With a --dataset.root nothing is fetched from the
Hugging Face Hub. Videos are decoded with PyAV unless --dataset.video_backend says otherwise.

Plugins come from the hyphenated flags below; per-dataset files are comma lists in dataset order.
Plugins and several datasets need robocandywrapper; a plain run on one dataset does not.
Checkpoints are LeRobot's (output_dir/checkpoints/<step>/pretrained_model + training_state, and
checkpoints/last): they load with from_pretrained and run under lerobot-eval. Resume as with
lerobot-train:
    python scripts/train.py --resume=true --config_path=OUT/checkpoints/last/pretrained_model/train_config.json
The plugin flags of the original run are saved with each checkpoint and reused; flags given again
override them.
"""

import argparse
import contextlib
import dataclasses
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from rewact_tools.cli import UNKNOWN_OUTCOMES, CliError, make_parser, positive_int, run_cli
from rewact_tools.takeovers import CREDITS
from rewact_tools.training_options import (
    ADVANTAGE_LABELS,
    REWARD_SOURCES,
    PluginOptions,
    split_list,
)


def plugin_parser() -> argparse.ArgumentParser:
    """Only the flags train.py adds; unset flags stay absent (so saved options can fill them)."""
    parser = make_parser(__doc__)
    parser.allow_abbrev = False
    parser.argument_default = argparse.SUPPRESS
    group = parser.add_argument_group("plugins (train.py's own flags)")
    group.add_argument(
        "--reward",
        choices=REWARD_SOURCES,
        help="RewACT value targets: policy = derived by the policy from the dataset (one dataset only); "
        "dense = keypoint sidecar, else linear progress; labels = --reward-labels parquet files; "
        "pistar = pi*0.6 returns from episode outcomes. Default: policy for one dataset, dense for several",
    )
    group.add_argument(
        "--reward-labels", metavar="PATH[,PATH...]", help="per-frame reward parquet per dataset"
    )
    group.add_argument("--reward-label-column", help="reward column of those files (default: reward)")
    group.add_argument(
        "--unknown-outcome",
        choices=sorted(UNKNOWN_OUTCOMES),
        help="how --reward pistar counts episodes of unknown outcome (default: error)",
    )
    group.add_argument(
        "--max-length",
        type=positive_int,
        help="--reward pistar: the return normaliser L_max, the task's longest successful episode in "
        "steps (default: each dataset's own; give it when datasets of one task are mixed)",
    )
    group.add_argument(
        "--credit",
        choices=CREDITS,
        help="--reward pistar: outcomes per episode (pi*0.6, the default) or per takeover segment, each "
        "stretch before a takeover a failure (as precompute_advantage.py --credit segment)",
    )
    group.add_argument(
        "--outcomes",
        action="store_true",
        help="add episode outcomes (robocandywrapper's outcomes file); RewACT then learns no actions from failures",
    )
    group.add_argument(
        "--control-mode",
        action="store_true",
        help="add per-frame control mode (episode_modes.json); RewACT learns no actions from autonomous "
        "frames, ACTvantage counts human frames as positive",
    )
    group.add_argument(
        "--advantages",
        nargs="?",
        const="",
        metavar="PATH[,PATH...]",
        help="advantages parquet per dataset for ACTvantage (alone: <root>/rewact_extensions/advantages.parquet)",
    )
    group.add_argument(
        "--advantage-label",
        choices=ADVANTAGE_LABELS,
        help="ACTvantage trains on the file's per-task 'positive' flag, or on the raw advantage "
        "thresholded at --policy.advantage_threshold (default: positive)",
    )
    return parser


def plugin_options(given: argparse.Namespace, saved: dict) -> PluginOptions:
    """Saved options (on resume), overridden by the flags given now."""
    values = dict(saved)
    for name, value in vars(given).items():
        values[name] = split_list(value) if name in ("reward_labels", "advantages") else value
    return PluginOptions(**values)


def parse_train_config(lerobot_args: list[str]):
    """LeRobot's TrainPipelineConfig from its flags, validated as lerobot-train does."""
    import draccus
    from lerobot.configs import parser
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.utils.import_utils import register_third_party_plugins

    from rewact_tools.lerobot_compat import config_sources_cached, in_installed_spelling

    register_third_party_plugins()
    lerobot_args = in_installed_spelling(lerobot_args)
    if not any(arg.startswith("--dataset.video_backend") for arg in lerobot_args) and not any(
        arg.startswith("--config_path") for arg in lerobot_args
    ):
        lerobot_args = [*lerobot_args, "--dataset.video_backend=pyav"]
    # LeRobot's parser and TrainPipelineConfig.validate read sys.argv. (No `from __future__ import
    # annotations` in this file: the parser reads the config class from the annotation below.)
    sys.argv = [sys.argv[0], *lerobot_args]

    @parser.wrap()
    def parse(cfg: TrainPipelineConfig) -> TrainPipelineConfig:
        return cfg

    # draccus reports bad flags through argparse (full usage, then exit) or as exceptions; both
    # become one-line errors.
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages), config_sources_cached():
            cfg = parse()
    except SystemExit as exit_:
        lines = [line for line in messages.getvalue().splitlines() if line.strip()]
        raise CliError(
            lines[-1].split(": error: ", 1)[-1] if lines else f"invalid flags (exit {exit_.code})"
        ) from None
    except draccus.utils.ParsingError as error:
        raise CliError(str(error)) from None
    sys.stderr.write(messages.getvalue())
    cfg.validate()
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given, lerobot_args = plugin_parser().parse_known_args(argv)
    cfg = parse_train_config(lerobot_args)
    saved = PluginOptions.load(Path(cfg.policy.pretrained_path)) if cfg.resume else {}
    options = plugin_options(given, saved)

    from lerobot.utils.utils import init_logging

    from rewact_tools.training import train

    init_logging()
    checkpoint = train(cfg, options)
    print(f"done; plugins {dataclasses.asdict(options)}; last checkpoint {checkpoint}")
    return 0


if __name__ == "__main__":
    run_cli(main, multiprocess=True)
