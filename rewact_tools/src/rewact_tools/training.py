"""Training RewACT / ACTvantage on one or several datasets with robocandywrapper plugins.

`lerobot-train` builds one `LeRobotDataset` and LeRobot's own processors, which drop every key a
plugin adds. This module keeps LeRobot's configuration (`TrainPipelineConfig`), optimiser and
scheduler presets, training step (`update_policy`), metrics, checkpoint layout and resume logic,
and replaces only the data side: every dataset is opened with its own root, wrapped with the
plugins chosen in `PluginOptions`, and the pre-processor carries their keys to the policy. So a
checkpoint written here loads with `from_pretrained` and runs under `lerobot-eval` like one written
by `lerobot-train`.

Several datasets are given as comma-separated lists: `--dataset.repo_id=a,b --dataset.root=ra,rb`;
`--dataset.episodes` applies to each of them.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.train import TrainPipelineConfig
from lerobot.configs.types import FeatureType
from lerobot.datasets.factory import IMAGENET_STATS, resolve_delta_timestamps
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.optim.factory import make_optimizer_and_scheduler
from lerobot.policies.factory import get_policy_class
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.scripts.lerobot_train import update_policy
from lerobot.utils.logging_utils import AverageMeter, MetricsTracker
from lerobot.utils.random_utils import set_seed
from lerobot.utils.utils import format_big_number
from tqdm import tqdm

from lerobot_policy_actvantage import ACTvantageConfig
from lerobot_policy_rewact import RewACTConfig
from rewact_tools.advantage_display import ADVANTAGES_RELATIVE_PATH
from rewact_tools.atomic import replace_directory
from rewact_tools.cli import UNKNOWN_OUTCOMES, CliError, load_metadata, select_episodes
from rewact_tools.control_modes import needs_intervention_fill
from rewact_tools.lerobot_compat import (
    ImageTransforms,
    cycle,
    dataset_to_policy_features,
    eval_frequency,
    get_step_checkpoint_dir,
    get_step_identifier,
    load_training_state,
    reward_model_requested,
    sample_weighting_requested,
    save_checkpoint,
    update_last_checkpoint,
)
from rewact_tools.offline import offline_if_local
from rewact_tools.processors import make_pre_post_processors
from rewact_tools.training_options import PluginOptions, split_list

if TYPE_CHECKING:
    from rewact_tools.candywrapper import DatasetPlugin, WrappedRobotDataset


def _require_robocandywrapper() -> None:
    """Import robocandywrapper (through `rewact_tools.candywrapper`), or stop with its install command."""
    try:
        import rewact_tools.candywrapper  # noqa: F401
    except ImportError as error:
        raise CliError(str(error)) from error


def _per_dataset(paths: list[str], datasets: list[LeRobotDataset], flag: str) -> dict[str, str]:
    """One file per dataset, keyed by dataset root as the plugins expect."""
    if len(paths) != len(datasets):
        raise CliError(f"{flag} needs one path per dataset ({len(datasets)}), got {len(paths)}: {paths}")
    return {str(dataset.root): path for dataset, path in zip(datasets, paths, strict=True)}


def load_training_datasets(cfg: TrainPipelineConfig) -> list[LeRobotDataset]:
    """Every dataset of `--dataset.repo_id` (comma list), each with its own root, as `lerobot-train`
    would open it (delta timestamps from the policy, image transforms, ImageNet camera stats)."""
    repo_ids = split_list(cfg.dataset.repo_id)
    roots = split_list(cfg.dataset.root) or [None] * len(repo_ids)
    if len(roots) != len(repo_ids) or not all(repo_ids):
        raise CliError(
            f"--dataset.root must list one folder per --dataset.repo_id: got {len(repo_ids)} repo ids "
            f"{repo_ids} and {len(roots)} roots {roots}"
        )
    if cfg.dataset.streaming:
        raise CliError("--dataset.streaming is not supported by train.py")
    transforms = (
        ImageTransforms(cfg.dataset.image_transforms) if cfg.dataset.image_transforms.enable else None
    )
    datasets = []
    for repo_id, root in zip(repo_ids, roots, strict=True):
        meta = load_metadata(repo_id, Path(root) if root else None)
        episodes = select_episodes(meta, cfg.dataset.episodes) if cfg.dataset.episodes is not None else None
        with offline_if_local(Path(root) if root else None):
            dataset = LeRobotDataset(
                repo_id,
                root=meta.root,
                episodes=episodes,
                delta_timestamps=resolve_delta_timestamps(cfg.policy, meta),
                image_transforms=transforms,
                revision=cfg.dataset.revision,
                video_backend=cfg.dataset.video_backend,
                tolerance_s=cfg.tolerance_s,
            )
        if cfg.dataset.use_imagenet_stats:
            for key in dataset.meta.camera_keys:
                for name, stats in IMAGENET_STATS.items():
                    dataset.meta.stats[key][name] = torch.tensor(stats, dtype=torch.float32)
        datasets.append(dataset)
    return datasets


def resolve_reward(options: PluginOptions, config: PreTrainedConfig, num_datasets: int) -> str | None:
    """The reward source actually used; checks it fits the policy and the number of datasets."""
    if not isinstance(config, RewACTConfig):
        return options.reward
    reward = options.reward or ("policy" if num_datasets == 1 else "dense")
    if reward == "policy" and num_datasets > 1:
        raise CliError(
            "--reward policy needs a single dataset (RewACT looks its own targets up by dataset index); "
            "with several datasets use --reward dense, labels or pistar"
        )
    if reward != "policy" and config.reward_source not in ("auto", "dataset"):
        raise CliError(
            f"--reward {reward} puts rewards in the batch, but --policy.reward_source={config.reward_source} "
            "ignores them; use --policy.reward_source=auto (or dataset), or --reward policy"
        )
    return reward


PluginSpec = tuple[str, dict]
"""A plugin class's name (in `rewact_tools.plugins` or `rewact_tools.candywrapper`) and its arguments."""


def make_plugins(
    options: PluginOptions, config: PreTrainedConfig, datasets: list[LeRobotDataset]
) -> list[DatasetPlugin]:
    """The plugins `options` ask for, in the order their keys depend on each other.

    `plugin_specs` decides which; robocandywrapper is imported only when it chose any, so a plain
    run needs none of it.
    """
    specs = plugin_specs(options, config, datasets)
    if not specs:
        return []
    _require_robocandywrapper()
    from rewact_tools import candywrapper, plugins

    return [(getattr(plugins, name, None) or getattr(candywrapper, name))(**kwargs) for name, kwargs in specs]


def plugin_specs(
    options: PluginOptions, config: PreTrainedConfig, datasets: list[LeRobotDataset]
) -> list[PluginSpec]:
    """Which plugins, with which arguments, after checking the options fit the policy and datasets."""
    reward = resolve_reward(options, config, len(datasets))
    if options.reward_labels and reward != "labels":
        raise CliError("--reward-labels goes with --reward labels")
    if reward != "pistar" and (
        options.max_length is not None or options.unknown_outcome != "error" or options.credit != "episode"
    ):
        raise CliError(
            f"--max-length, --unknown-outcome and --credit go with --reward pistar (the reward here is {reward})"
        )
    if isinstance(config, ACTvantageConfig) and len(datasets) > 1 and not options.advantages:
        raise CliError(
            "ACTvantage on several datasets needs --advantages PATH,PATH,... (one parquet per dataset)"
        )
    value_range = (
        {"value_min": config.value_min, "value_max": config.value_max}
        if isinstance(config, RewACTConfig)
        else {}
    )
    # A mix keeps `intervention` where only some datasets record it (the wrapper would drop it).
    specs: list[PluginSpec] = [("MixedInterventionPlugin", {})] if needs_intervention_fill(datasets) else []
    if options.outcomes or reward == "pistar":
        specs.append(("EpisodeOutcomePlugin", {}))
    if reward == "dense":
        specs.append(
            ("DenseRewardPlugin", {"start": config.progress_start, "end": config.progress_end, **value_range})
        )
    elif reward == "labels":
        if not options.reward_labels:
            raise CliError("--reward labels needs --reward-labels PATH[,PATH...] (one parquet per dataset)")
        paths = _per_dataset(options.reward_labels, datasets, "--reward-labels")
        specs.append(
            (
                "LabelledRewardPlugin",
                {"path_or_per_dataset_paths": paths, "column": options.reward_label_column, **value_range},
            )
        )
    elif reward == "pistar":
        specs.append(
            (
                "PiStar0_6CumulativeRewardPlugin",
                {
                    "max_length": options.max_length,
                    "unknown_as": UNKNOWN_OUTCOMES[options.unknown_outcome],
                    "credit": options.credit,
                },
            )
        )
    if options.control_mode:
        specs.append(("ControlModePlugin", {}))
    if options.advantages:
        specs.append(_advantage_plugin_spec(options, config, datasets))
    return specs


def _advantage_plugin_spec(
    options: PluginOptions, config: PreTrainedConfig, datasets: list[LeRobotDataset]
) -> PluginSpec:
    """The advantages of each dataset, under the policy's `advantage_key`: the file's per-task
    `positive` flag, or the raw advantage."""
    if not isinstance(config, ACTvantageConfig):
        raise CliError(f"--advantages trains ACTvantage (--policy.type=actvantage), not {config.type}")
    given = options.advantages * len(datasets) if options.advantages == [""] else options.advantages
    paths = {
        root: path or str(Path(root) / ADVANTAGES_RELATIVE_PATH)
        for root, path in _per_dataset(given, datasets, "--advantages").items()
    }
    if options.advantage_label == "positive":
        return "PiStar0_6AdvantagePlugin", {
            "path_or_per_dataset_paths": paths,
            "key": "advantage_value",
            "positive_key": config.advantage_key,
        }
    return "PiStar0_6AdvantagePlugin", {
        "path_or_per_dataset_paths": paths,
        "key": config.advantage_key,
        "positive_key": None,
    }


def check_plugin_items(dataset: WrappedRobotDataset, datasets: list[LeRobotDataset]) -> None:
    """Read the first frame of every dataset through the wrapper and raise the error a plugin hit.

    robocandywrapper turns a plugin's exception into a warning and drops its keys, which would
    otherwise surface later as an obscure collation error.
    """
    position = 0
    for inner in datasets:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset[position]
        failures = [str(w.message) for w in caught if "failed for idx" in str(w.message)]
        if failures:
            raise ValueError(f"dataset {inner.repo_id} at {inner.root}: {failures[0]}")
        position += len(inner)


def training_dataset(
    datasets: list[LeRobotDataset], plugins: list[DatasetPlugin], rename_map: dict[str, str] | None
) -> LeRobotDataset | WrappedRobotDataset:
    """What the run trains on: the one dataset as it is when nothing needs robocandywrapper (no
    plugin, no second dataset to mix in, no keys to rename), else all of them wrapped with the plugins.
    """
    if not plugins and len(datasets) == 1 and not rename_map:
        return datasets[0]
    _require_robocandywrapper()
    from rewact_tools.candywrapper import WrappedRobotDataset

    dataset = WrappedRobotDataset(datasets, plugins=plugins, key_rename_map=rename_map or None)
    check_plugin_items(dataset, datasets)
    return dataset


def make_training_policy(
    config: PreTrainedConfig, dataset: LeRobotDataset | WrappedRobotDataset, dataset_meta: Any
) -> PreTrainedPolicy:
    """The policy, new or from `config.pretrained_path`, with features from the wrapped datasets.

    What `lerobot.policies.factory.make_policy` does, except that `dataset_meta` (the one dataset's
    metadata, or None for several) is passed separately from the merged features and stats.
    """
    features = dataset_to_policy_features(dataset.meta.features)
    config.output_features = {key: ft for key, ft in features.items() if ft.type is FeatureType.ACTION}
    if not config.input_features:
        config.input_features = {key: ft for key, ft in features.items() if key not in config.output_features}
    policy_cls = get_policy_class(config.type)
    kwargs = {"config": config, "dataset_stats": dataset.meta.stats, "dataset_meta": dataset_meta}
    if config.pretrained_path:
        policy = policy_cls.from_pretrained(config.pretrained_path, **kwargs)
    else:
        policy = policy_cls(**kwargs)
    return policy.to(config.device)


def make_training_processors(cfg: TrainPipelineConfig, policy: PreTrainedPolicy, stats: dict) -> tuple:
    """Processors as `lerobot-train` makes them: saved ones on resume, saved ones re-normalised to
    this data when fine-tuning, new ones otherwise; all carrying the plugin keys."""
    pretrained = cfg.policy.pretrained_path
    if cfg.resume:
        return make_pre_post_processors(policy.config, pretrained_path=pretrained)
    return make_pre_post_processors(policy.config, dataset_stats=stats, pretrained_path=pretrained)


def _check_supported(cfg: TrainPipelineConfig) -> None:
    unsupported = {
        "--peft.*": cfg.peft is not None,
        "sample weighting (--sample_weighting.* / --use_rabc)": sample_weighting_requested(cfg),
        "--reward_model.* (use lerobot-train)": reward_model_requested(cfg),
        "--wandb.enable": cfg.wandb.enable,
    }
    named = [flag for flag, used in unsupported.items() if used]
    if named:
        raise CliError(f"train.py does not support {', '.join(named)}; use lerobot-train for that")


def _make_accelerator(cfg: TrainPipelineConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    return Accelerator(
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        cpu=cfg.policy.device == "cpu",
    )


def _evaluate(
    cfg: TrainPipelineConfig, policy: PreTrainedPolicy, processors: tuple, env: Any, step: int
) -> dict:
    """One evaluation in simulation, as `lerobot-train` runs it."""
    from lerobot.envs.factory import make_env_pre_post_processors
    from lerobot.scripts.lerobot_eval import eval_policy_all

    env_preprocessor, env_postprocessor = make_env_pre_post_processors(env_cfg=cfg.env, policy_cfg=cfg.policy)
    with torch.no_grad():
        info = eval_policy_all(
            envs=env,
            policy=policy,
            env_preprocessor=env_preprocessor,
            env_postprocessor=env_postprocessor,
            preprocessor=processors[0],
            postprocessor=processors[1],
            n_episodes=cfg.eval.n_episodes,
            videos_dir=cfg.output_dir / "eval" / f"videos_step_{get_step_identifier(step, cfg.steps)}",
            max_episodes_rendered=4,
            start_seed=cfg.seed,
            max_parallel_tasks=cfg.env.max_parallel_tasks,
        )
    return info["overall"]


def _push(
    cfg: TrainPipelineConfig, policy: PreTrainedPolicy, preprocessor, postprocessor, checkpoint: Path
) -> None:
    """Push the policy and its processors to `--policy.repo_id`, as `lerobot-train` does."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        policy.push_model_to_hub(cfg)
        preprocessor.push_to_hub(cfg.policy.repo_id)
        postprocessor.push_to_hub(cfg.policy.repo_id)
    except (OSError, HfHubHTTPError) as error:
        raise CliError(
            f"training finished (last checkpoint {checkpoint}) but pushing it to the hub as "
            f"{cfg.policy.repo_id} failed: {error}; pass --policy.push_to_hub=false to keep it local"
        ) from error


def log_metrics(tracker: MetricsTracker, output: dict, is_main: bool) -> None:
    """One metrics line from the main process, then a new averaging window.

    LeRobot 0.6's tracker aggregates the policy's outputs itself and averages them over the
    processes (a collective every process must join); 0.4's does neither, so the outputs of this
    step (the main process's) are appended, each key once."""
    reduce_across_ranks = getattr(tracker, "reduce_across_ranks", None)
    if reduce_across_ranks is not None:
        reduce_across_ranks()
    if is_main:
        details = " ".join(
            f"{key}:{value:.3f}"
            for key, value in output.items()
            if isinstance(value, float) and key not in tracker.metrics
        )
        logging.info(f"{tracker} {details}".rstrip())
    tracker.reset_averages()


def save_checkpoint_atomically(
    checkpoint_dir: Path, save: Callable[[Path], None], options: PluginOptions
) -> None:
    """`save` a checkpoint (with the plugin options) into a hidden sibling folder, then rename it to
    `checkpoint_dir` and point `last` at it: a crash mid-save never leaves a half-written checkpoint
    where `--resume` or `from_pretrained` would look."""
    staging = checkpoint_dir.parent / f".{checkpoint_dir.name}.saving"
    if staging.exists():
        shutil.rmtree(staging)
    save(staging)
    options.save(staging / "pretrained_model")
    replace_directory(staging, checkpoint_dir, checkpoint_dir.parent / f".{checkpoint_dir.name}.previous")
    update_last_checkpoint(checkpoint_dir)


def train(cfg: TrainPipelineConfig, options: PluginOptions) -> Path | None:
    """Run training (`cfg` already validated); returns the last checkpoint folder (None when
    `--save_checkpoint=false`)."""
    _check_supported(cfg)
    accelerator = _make_accelerator(cfg)
    checkpoint_dir = _train_with(accelerator, cfg, options)
    end_training(accelerator)
    return checkpoint_dir


def end_training(accelerator: Any) -> None:
    """Destroy the process group once nothing but `torch.distributed` holds it.

    DDP's C++ Reducer holds the group too, and Python frees the Reducer with the GIL held. Were it
    the group's last owner, gloo's destructor would wait for its worker threads while one of them
    waits for the GIL to free a Python tensor of a finished collective (a barrier keeps the
    all-reduce just before it alive): the process hangs at exit, as LeRobot 0.6.1's `lerobot-train`
    does under torchrun on CPU with PyTorch 2.11 (pytorch#56297). So the prepared (DDP-wrapped)
    objects, all local to `_train_with`, are gone and collected before the group is destroyed."""
    accelerator.free_memory()
    accelerator.end_training()


def _train_with(accelerator: Any, cfg: TrainPipelineConfig, options: PluginOptions) -> Path | None:
    """The training run in this process; the objects it prepares live no longer than it does."""
    if cfg.seed is not None:
        set_seed(cfg.seed, accelerator=accelerator)
    datasets = load_training_datasets(cfg)
    plugins = make_plugins(options, cfg.policy, datasets)
    dataset = training_dataset(datasets, plugins, cfg.rename_map)
    policy = make_training_policy(cfg.policy, dataset, datasets[0].meta if len(datasets) == 1 else None)
    preprocessor, postprocessor = make_training_processors(cfg, policy, dataset.meta.stats)
    optimizer, lr_scheduler = make_optimizer_and_scheduler(cfg, policy)
    step = 0
    if cfg.resume:
        step, optimizer, lr_scheduler = load_training_state(cfg.checkpoint_path, optimizer, lr_scheduler)

    # Under a multi-process launch (torchrun, accelerate launch) every process trains on its share
    # of each batch; only the main one logs, evaluates, saves and pushes.
    is_main = accelerator.is_main_process
    env = None
    if is_main and eval_frequency(cfg) > 0 and cfg.env is not None:
        from lerobot.envs.factory import make_env

        env = make_env(cfg.env, n_envs=cfg.eval.batch_size, use_async_envs=cfg.eval.use_async_envs)

    num_params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    if is_main:
        logging.info(
            f"Training {cfg.policy.type} on {[d.repo_id for d in datasets]} ({dataset.num_frames} frames, "
            f"{dataset.num_episodes} episodes) with plugins {[type(p).__name__ for p in plugins]}; "
            f"{format_big_number(num_params)} parameters; output {cfg.output_dir}; "
            f"{accelerator.num_processes} process(es), effective batch size "
            f"{cfg.batch_size} x {accelerator.num_processes}"
        )
    dataloader = torch.utils.data.DataLoader(
        dataset,
        num_workers=cfg.num_workers,
        batch_size=cfg.batch_size,
        shuffle=True,
        pin_memory=accelerator.device.type == "cuda",
        drop_last=False,
        prefetch_factor=2 if cfg.num_workers > 0 else None,
    )
    policy, optimizer, dataloader, lr_scheduler = accelerator.prepare(
        policy, optimizer, dataloader, lr_scheduler
    )
    batches = cycle(dataloader)
    meters = {
        "loss": AverageMeter("loss", ":.3f"),
        "grad_norm": AverageMeter("grdn", ":.3f"),
        "lr": AverageMeter("lr", ":0.1e"),
        "update_s": AverageMeter("updt_s", ":.3f"),
        "dataloading_s": AverageMeter("data_s", ":.3f"),
    }
    tracker = MetricsTracker(
        cfg.batch_size,
        dataset.num_frames,
        dataset.num_episodes,
        meters,
        initial_step=step,
        accelerator=accelerator,
    )
    checkpoint_dir = None
    progress = tqdm(
        range(step, cfg.steps),
        desc="Training",
        unit="step",
        initial=step,
        total=cfg.steps,
        disable=not is_main,
    )
    for _ in progress:
        start = time.perf_counter()
        batch = preprocessor(next(batches))
        tracker.dataloading_s = time.perf_counter() - start
        tracker, output = update_policy(
            tracker,
            policy,
            batch,
            optimizer,
            cfg.optimizer.grad_clip_norm,
            accelerator=accelerator,
            lr_scheduler=lr_scheduler,
        )
        step += 1
        tracker.step()
        if cfg.log_freq > 0 and step % cfg.log_freq == 0:
            log_metrics(tracker, output, is_main)
        if cfg.save_checkpoint and (step % cfg.save_freq == 0 or step == cfg.steps):
            checkpoint_dir = get_step_checkpoint_dir(cfg.output_dir, cfg.steps, step)
            if is_main:
                save_checkpoint_atomically(
                    checkpoint_dir,
                    lambda folder, step=step: save_checkpoint(
                        folder,
                        step,
                        cfg,
                        accelerator.unwrap_model(policy),
                        optimizer,
                        lr_scheduler,
                        preprocessor,
                        postprocessor,
                    ),
                    options,
                )
                logging.info(f"Saved checkpoint {checkpoint_dir}")
            accelerator.wait_for_everyone()
        if env is not None and step % eval_frequency(cfg) == 0:
            overall = _evaluate(
                cfg, accelerator.unwrap_model(policy), (preprocessor, postprocessor), env, step
            )
            logging.info(
                f"Eval at step {step}: success {overall['pc_success']:.1f}%, "
                f"sum reward {overall['avg_sum_reward']:.3f}"
            )
    if env is not None:
        from lerobot.envs.utils import close_envs

        close_envs(env)
    if is_main and cfg.policy.push_to_hub:
        _push(cfg, accelerator.unwrap_model(policy), preprocessor, postprocessor, checkpoint_dir)
    return checkpoint_dir
