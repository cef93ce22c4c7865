"""The command-line programs in scripts/, run as a user runs them: subprocesses on local datasets.

One tiny RewACT checkpoint is trained once (by scripts/train.py) and shared. Independent runs are
started together to keep the module fast on two cores. Every run has HF_HUB_OFFLINE=1: nothing may
come from the hub.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_actvantage import ACTvantagePolicy
from lerobot_policy_rewact import RewACTPolicy
from rewact_tools.advantages import compute_advantages, frame_thresholds, read_advantages, write_advantages
from rewact_tools.candywrapper import WrappedRobotDataset, install_command
from rewact_tools.cli import CliError
from rewact_tools.lerobot_compat import EVAL_FREQ_FIELD
from rewact_tools.outcomes import write_episode_outcomes
from rewact_tools.processors import make_pre_post_processors
from rewact_tools.returns import dataset_frames
from rewact_tools.rollouts import ROLLOUTS_SIDECAR
from rewact_tools.training import make_plugins
from rewact_tools.training_options import PluginOptions

from local_datasets import make_local_dataset
from subprocess_helpers import (
    SMOKE_TRAIN_FLAGS,
    SUBPROCESS_ENV,
    TINY_POLICY_FLAGS,
    Run,
    dataset_args,
    mp4_frames,
    run_script,
    run_scripts,
)

ENV = SUBPROCESS_ENV
TINY_FLAGS = [*TINY_POLICY_FLAGS, *SMOKE_TRAIN_FLAGS]
LENGTHS_A = (12, 16, 10)
LENGTHS_B = (9, 11)
# Episode media: cameras scaled to 256 px high above a 256 px panel at least 512 px wide.
MEDIA_SIZE_ONE_CAMERA = (512, 512)
SCRIPTS = (
    "train.py",
    "label_rewards.py",
    "visualise_reward_labels.py",
    "visualise_reward_predictions.py",
    "evaluate_reward_model.py",
    "precompute_advantage.py",
    "visualise_advantages.py",
    "calibrate_success.py",
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scripts")


@pytest.fixture(scope="module")
def dataset_a(workdir) -> Path:
    """Three episodes, one 32x32 camera; next.success on episodes 0 and 2 (episode 1 fails)."""
    root = workdir / "a"
    make_local_dataset(root, repo_id="local/a", episode_lengths=LENGTHS_A, with_next_fields=True)
    return root


@pytest.fixture(scope="module")
def dataset_b(workdir) -> Path:
    """Same features as `dataset_a`, another task, outcomes in robocandywrapper's file."""
    root = workdir / "b"
    make_local_dataset(
        root,
        repo_id="local/b",
        episode_lengths=LENGTHS_B,
        with_next_fields=True,
        tasks=("other task",),
        seed=1,
    )
    write_episode_outcomes(root, {0: True, 1: False})
    return root


@pytest.fixture(scope="module")
def trained(workdir, dataset_a) -> Path:
    """A tiny RewACT trained by scripts/train.py for 4 steps, checkpoints at steps 2 and 4."""
    output = workdir / "train_a"
    run_script(
        "train.py",
        "--dataset.repo_id=local/a",
        f"--dataset.root={dataset_a}",
        "--dataset.episodes=[0,1,2]",
        "--policy.type=rewact",
        "--policy.repo_id=local/rewact_tiny",
        f"--output_dir={output}",
        "--job_name=tiny",
        "--save_freq=2",
        "--steps=4",
        *TINY_FLAGS,
    ).check()
    return output


@pytest.fixture(scope="module")
def checkpoint(trained) -> Path:
    return trained / "checkpoints" / "last" / "pretrained_model"


@pytest.fixture(scope="module")
def advantages_a(dataset_a, checkpoint) -> tuple[Path, Run]:
    """precompute_advantage.py on dataset a, written to the default place."""
    run = run_script(
        "precompute_advantage.py",
        *dataset_args(dataset_a, "local/a"),
        "--policy-path",
        checkpoint,
        "--n-step",
        "3",
        "--positive-fraction",
        "0.3",
        "--batch-size",
        "8",
    ).check()
    return dataset_a / "rewact_extensions" / "advantages.parquet", run


@pytest.fixture(scope="module")
def advantages_b(dataset_b) -> Path:
    """An advantages file for dataset b at its default place, from made-up values."""
    frames = dataset_frames(LeRobotDataset("local/b", root=dataset_b))
    values = frames[["index"]].assign(value=np.linspace(0.1, 0.9, len(frames)))
    table = compute_advantages(frames, values, {0: True, 1: False}, n_steps=2)
    return write_advantages(table, dataset_b / "rewact_extensions" / "advantages.parquet")


def test_every_script_has_help():
    """Each script starts in a fresh interpreter (the other tests run them in the test process)."""
    runs = run_scripts(*((script, ["--help"]) for script in SCRIPTS), fresh_interpreter=True)
    for script, run in zip(SCRIPTS, runs, strict=True):
        run.check()
        assert "usage:" in run.stdout, script
    assert "--dataset.repo_id" in runs[0].stdout and "--reward" in runs[0].stdout
    for run in runs[1:]:
        assert "--dataset-repo-id" in run.stdout and "--dataset-root" in run.stdout


def test_train_writes_lerobot_checkpoints_that_load(trained, checkpoint, dataset_a):
    steps = sorted(path.name for path in (trained / "checkpoints").iterdir())
    assert steps == ["000002", "000004", "last"]
    assert (trained / "checkpoints" / "last").resolve() == (trained / "checkpoints" / "000004").resolve()
    for name in (
        "config.json",
        "model.safetensors",
        "train_config.json",
        "policy_preprocessor.json",
        "policy_postprocessor.json",
    ):
        assert (checkpoint / name).is_file(), name
    assert json.loads((checkpoint.parent / "training_state" / "training_step.json").read_text())["step"] == 4
    assert json.loads((checkpoint / "rewact_plugins.json").read_text())["reward"] is None

    policy = RewACTPolicy.from_pretrained(checkpoint)
    assert policy.config.dim_model == 32 and policy.config.chunk_size == 4
    preprocessor, _ = make_pre_post_processors(policy.config, pretrained_path=checkpoint)
    dataset = LeRobotDataset("local/a", root=dataset_a)
    batch = preprocessor(torch.utils.data.default_collate([dataset[0], dataset[5]]))
    values = policy.predict_value({k: v for k, v in batch.items() if k.startswith("observation.")})
    assert values.shape == (2,) and torch.all((values >= 0) & (values <= 1))


@pytest.mark.duration(8)
def test_train_resumes_from_its_checkpoint(trained, workdir):
    copy = workdir / "train_a_resumed"
    shutil.copytree(trained, copy, symlinks=True)
    config = copy / "checkpoints" / "last" / "pretrained_model" / "train_config.json"
    run = run_script(
        "train.py", "--resume=true", f"--config_path={config}", f"--output_dir={copy}", "--steps=6"
    )
    run.check()
    log = run.stdout + run.stderr
    assert "step:5 " in log and "step:1 " not in log  # continued from step 4
    assert (
        json.loads((copy / "checkpoints" / "last" / "training_state" / "training_step.json").read_text())[
            "step"
        ]
        == 6
    )
    assert RewACTPolicy.from_pretrained(copy / "checkpoints" / "000006" / "pretrained_model") is not None


def test_plugins_put_their_keys_into_the_training_batch(dataset_a, dataset_b):
    """What train.py builds for two datasets with --reward dense --outcomes, checked item by item."""
    from lerobot_policy_rewact import RewACTConfig

    datasets = [LeRobotDataset("local/a", root=dataset_a), LeRobotDataset("local/b", root=dataset_b)]
    config = RewACTConfig(pretrained_backbone_weights=None, device="cpu")
    plugins = make_plugins(PluginOptions(reward="dense", outcomes=True), config, datasets)
    wrapped = WrappedRobotDataset(datasets, plugins=plugins)
    last_of_b = wrapped[len(wrapped) - 1]
    assert float(last_of_b["reward"]) == pytest.approx(1.0)
    assert bool(last_of_b["episode_outcome"]) is False and bool(last_of_b["episode_outcome_mask"]) is True
    assert float(wrapped[0]["reward"]) == 0.0

    from rewact_tools.lerobot_compat import dataset_to_policy_features

    features = dataset_to_policy_features(wrapped.meta.features)
    config.input_features = {k: f for k, f in features.items() if k != "action"}
    config.output_features = {"action": features["action"]}
    preprocessor, _ = make_pre_post_processors(config, dataset_stats=wrapped.meta.stats)
    batch = preprocessor(torch.utils.data.default_collate([wrapped[0], wrapped[len(wrapped) - 1]]))
    assert batch["reward"].tolist() == pytest.approx([0.0, 1.0])
    assert batch["episode_outcome_mask"].tolist() == [False, True]


def test_a_mix_keeps_the_rollouts_intervention_column(workdir, dataset_a):
    """Demonstrations (no `intervention`) plus rollouts (with it): robocandywrapper alone drops the
    column; train.py's plugins keep it, filled False with `intervention_is_pad` on the
    demonstrations, so RewACT learns actions from demonstrations and corrections, not from the
    policy's own frames."""
    from lerobot_policy_rewact import RewACTConfig, RewACTPolicy
    from lerobot_policy_rewact.control_mode import control_flags

    rollout_root = workdir / "a_rollouts"
    make_local_dataset(
        rollout_root,
        repo_id="local/a_rollouts",
        episode_lengths=(6, 5),
        with_next_fields=True,
        intervention=lambda episode, frame: frame >= 3,
    )
    datasets = [
        LeRobotDataset("local/a", root=dataset_a),
        LeRobotDataset("local/a_rollouts", root=rollout_root),
    ]
    assert "intervention" not in WrappedRobotDataset(datasets)[len(datasets[0])]
    config = RewACTConfig(pretrained_backbone_weights=None, device="cpu", chunk_size=2, n_action_steps=2)
    plugins = make_plugins(PluginOptions(reward="dense"), config, datasets)
    assert type(plugins[0]).__name__ == "MixedInterventionPlugin"
    wrapped = WrappedRobotDataset(datasets, plugins=plugins)
    demonstrations = len(datasets[0])
    rows = [
        0,
        demonstrations + 2,
        demonstrations + 3,
        demonstrations + 6,
    ]  # a demo, policy, corrector, policy
    items = [wrapped[row] for row in rows]
    assert [bool(item["intervention"]) for item in items] == [False, False, True, False]
    assert [bool(item["intervention_is_pad"]) for item in items] == [True, False, False, False]

    from rewact_tools.lerobot_compat import dataset_to_policy_features

    features = dataset_to_policy_features(wrapped.meta.features)
    config.input_features = {k: f for k, f in features.items() if k != "action"}
    config.output_features = {"action": features["action"]}
    preprocessor, _ = make_pre_post_processors(config, dataset_stats=wrapped.meta.stats)
    batch = preprocessor(torch.utils.data.default_collate(items))
    human, autonomous = control_flags(batch, len(rows))
    assert human.tolist() == [False, False, True, False] and autonomous.tolist() == [False, True, False, True]
    policy = RewACTPolicy(config)
    assert policy.action_mask(batch)[:, 0].tolist() == [True, False, True, False]
    # Without another dataset nothing is filled, and nothing needs the plugin.
    assert make_plugins(PluginOptions(), RewACTConfig(pretrained_backbone_weights=None), datasets[1:]) == []


def test_plugins_for_every_reward_source_and_control_mode(workdir, dataset_a):
    from lerobot_policy_rewact import RewACTConfig

    dataset = LeRobotDataset("local/a", root=dataset_a)
    config = RewACTConfig(pretrained_backbone_weights=None, device="cpu")
    frames = dataset_frames(dataset)
    labels = workdir / "labels_a.parquet"
    frames[["index"]].assign(reward=np.linspace(0, 1, len(frames), dtype=np.float32)).to_parquet(labels)
    modes = dataset_a / "candywrapper_plugins" / "control_mode" / "episode_modes.json"
    modes.parent.mkdir(parents=True)
    modes.write_text(
        json.dumps(
            {
                "1": [
                    {"start_index": 0, "end_index": 7, "mode": "human"},
                    {"start_index": 8, "end_index": 15, "mode": "policy"},
                ]
            }
        )
    )

    def wrapped(options: PluginOptions) -> WrappedRobotDataset:
        return WrappedRobotDataset([dataset], plugins=make_plugins(options, config, [dataset]))

    labelled = wrapped(PluginOptions(reward="labels", reward_labels=[str(labels)], control_mode=True))
    item = labelled[20]  # episode 1, frame 8
    assert float(item["reward"]) == pytest.approx(20 / (len(frames) - 1))
    assert (
        item["control_mode"] == "policy"
        and bool(item["control_mode_autonomous"])
        and not bool(item["control_mode_human"])
    )
    assert labelled[12]["control_mode"] == "human"

    pistar = wrapped(PluginOptions(reward="pistar"))
    assert [type(p).__name__ for p in pistar._plugins] == [
        "EpisodeOutcomePlugin",
        "PiStar0_6CumulativeRewardPlugin",
    ]
    assert float(pistar[11]["reward"]) == 1.0  # last frame of a success
    assert float(pistar[12]["reward"]) == 0.0  # every frame of a failure sits at the bottom
    # Episode 1 starts under human control and hands back: no takeover, so segments are the episodes.
    segment = wrapped(PluginOptions(reward="pistar", credit="segment"))
    assert segment._plugins[1].credit == "segment"
    assert [float(segment[i]["reward"]) for i in (11, 12, 20)] == [
        float(pistar[i]["reward"]) for i in (11, 12, 20)
    ]

    with pytest.raises(CliError, match="needs --reward-labels"):
        make_plugins(PluginOptions(reward="labels"), config, [dataset])
    with pytest.raises(CliError, match="one path per dataset"):
        make_plugins(PluginOptions(reward="labels", reward_labels=["a", "b"]), config, [dataset])
    with pytest.raises(CliError, match="--advantages trains ACTvantage"):
        make_plugins(PluginOptions(advantages=[""]), config, [dataset])
    for pistar_only in ({"max_length": 40}, {"unknown_outcome": "failure"}, {"credit": "segment"}):
        with pytest.raises(CliError, match="go with --reward pistar .the reward here is dense"):
            make_plugins(PluginOptions(reward="dense", **pistar_only), config, [dataset])
    modes.unlink()


def test_advantage_plugin_serves_the_policy_key(dataset_a, advantages_a):
    from lerobot_policy_actvantage import ACTvantageConfig

    dataset = LeRobotDataset("local/a", root=dataset_a)
    config = ACTvantageConfig(pretrained_backbone_weights=None, device="cpu")
    table = read_advantages(advantages_a[0]).set_index("index")
    for label, expected in (("positive", table["positive"]), ("raw", table["advantage"])):
        plugins = make_plugins(PluginOptions(advantages=[""], advantage_label=label), config, [dataset])
        item = WrappedRobotDataset([dataset], plugins=plugins)[7]
        assert item["advantage"].item() == pytest.approx(expected.loc[7]), label


@pytest.mark.duration(16)
def test_train_on_two_datasets_with_plugins_runs_under_lerobot_eval(workdir, dataset_a, dataset_b):
    output = workdir / "train_ab"
    run = run_script(
        "train.py",
        "--dataset.repo_id=local/a,local/b",
        f"--dataset.root={dataset_a},{dataset_b}",
        "--policy.type=rewact",
        f"--output_dir={output}",
        "--steps=2",
        "--reward",
        "dense",
        "--outcomes",
        *TINY_FLAGS,
    ).check()
    assert "['EpisodeOutcomePlugin', 'DenseRewardPlugin']" in run.stdout + run.stderr
    model = output / "checkpoints" / "last" / "pretrained_model"
    saved = json.loads((model / "rewact_plugins.json").read_text())
    assert saved["reward"] == "dense" and saved["outcomes"] is True
    policy = RewACTPolicy.from_pretrained(model)
    assert set(policy.config.input_features) == {"observation.image", "observation.state"}

    run_script(
        "lerobot-eval",
        f"--policy.path={model}",
        "--env.type=pusht",
        "--env.observation_height=32",
        "--env.observation_width=32",
        "--env.episode_length=5",
        "--eval.n_episodes=1",
        "--eval.batch_size=1",
        "--policy.device=cpu",
        f"--output_dir={workdir / 'eval_ab'}",
    ).check()


def test_train_actvantage_on_two_datasets_with_advantage_files(
    workdir, dataset_a, dataset_b, advantages_a, advantages_b
):
    output = workdir / "train_actvantage"
    run_script(
        "train.py",
        "--dataset.repo_id=local/a,local/b",
        f"--dataset.root={dataset_a},{dataset_b}",
        "--policy.type=actvantage",
        f"--output_dir={output}",
        "--steps=2",
        "--advantages",
        *TINY_FLAGS,
    ).check()
    policy = ACTvantagePolicy.from_pretrained(output / "checkpoints" / "last" / "pretrained_model")
    assert policy.config.advantage_key == "advantage"


@pytest.mark.duration(18)
def test_train_needs_robocandywrapper_only_for_plugins(workdir, dataset_a):
    """A plain run trains without robocandywrapper (and takes the other LeRobot version's spelling of
    the evaluation period); a plugin flag stops with the install command for this LeRobot."""
    other_spelling = "--eval_freq=-1" if EVAL_FREQ_FIELD == "env_eval_freq" else "--env_eval_freq=-1"
    flags = [
        *TINY_POLICY_FLAGS,
        *(flag for flag in SMOKE_TRAIN_FLAGS if "eval_freq" not in flag),
        other_spelling,
    ]
    data = ["--dataset.repo_id=local/a", f"--dataset.root={dataset_a}", "--policy.type=rewact", "--steps=2"]
    plain, with_plugin = run_scripts(
        ("train.py", [*data, *flags, f"--output_dir={workdir / 'no_candy'}"]),
        ("train.py", [*data, *flags, f"--output_dir={workdir / 'no_candy_dense'}", "--reward", "dense"]),
        without_robocandywrapper=True,
    )
    plain.check()
    assert RewACTPolicy.from_pretrained(workdir / "no_candy" / "checkpoints" / "last" / "pretrained_model")
    error = with_plugin.check_user_error("robocandywrapper is not installed", "robocandywrapper==0.2.18")
    assert error.endswith(f"Install it with: {install_command()}")
    assert not (workdir / "no_candy_dense").exists()


@pytest.mark.duration(8)
def test_train_rejects_bad_input_in_one_line(workdir, dataset_a, dataset_b):
    runs = run_scripts(
        (
            "train.py",
            [
                "--dataset.repo_id=local/a,local/b",
                f"--dataset.root={dataset_a},{dataset_b}",
                "--policy.type=rewact",
                "--reward",
                "policy",
                f"--output_dir={workdir / 'x1'}",
                *TINY_FLAGS,
            ],
        ),
        (
            "train.py",
            [
                "--dataset.repo_id=local/a",
                f"--dataset.root={dataset_a}",
                "--policy.type=rewact",
                "--steps=many",
                *TINY_FLAGS,
            ],
        ),
    )
    runs[0].check_user_error("--reward policy needs a single dataset")
    runs[1].check_user_error("steps", "many")
    assert not (workdir / "x1").exists()


@pytest.fixture(scope="module")
def labelled(workdir, dataset_a) -> Path:
    """A copy of dataset a for the labelling scripts to write into."""
    root = workdir / "labelled"
    shutil.copytree(dataset_a, root)
    return root


def test_label_rewards_from_config_and_flags(workdir, labelled):
    sidecar = labelled / "rewact_extensions" / "reward_keypoints.json"
    config = workdir / "labels.json"
    config.write_text(
        json.dumps(
            {
                "repo_id": "local/a",
                "episodes": {
                    "0": {
                        "keypoints": [{"frame_index": 4, "reward": 0.5}, {"timestamp": 1.0, "reward": 1.0}]
                    },
                    "2": {"keypoints": [{"frame_index": 9, "reward": 1.0}]},
                },
            }
        )
    )
    written, dry = run_scripts(
        ("label_rewards.py", [*dataset_args(labelled, "local/a"), "--config", config]),
        (
            "label_rewards.py",
            [*dataset_args(labelled, "local/a"), "--episode", "1", "--keypoint", "8:0.5", "--dry-run"],
        ),
    )
    assert (
        "episode 0 (length 12, 2 keypoint(s)): 0=0.000" in written.check().stdout
        and "4=0.500" in written.stdout
    )
    assert "episode 1 (length 16, 1 keypoint(s))" in dry.check().stdout and "8=0.500" in dry.stdout
    saved = json.loads(sidecar.read_text())
    assert sorted(saved) == ["0", "2"]  # the dry run wrote nothing
    assert [k["frame_index"] for k in saved["0"]["keypoints"]] == [4, 10]

    run_script(
        "label_rewards.py", *dataset_args(labelled, "local/a"), "--episode", "1", "--keypoint", "0.8s:1.0"
    ).check()
    assert sorted(json.loads(sidecar.read_text())) == ["0", "1", "2"]  # other episodes kept
    run_script(
        "label_rewards.py",
        *dataset_args(labelled, "local/a"),
        "--episode",
        "2",
        "--keypoint",
        "5:1.0",
        "--clear-existing",
    ).check()
    assert json.loads(sidecar.read_text()) == {
        "2": {"keypoints": [{"frame_index": 5, "timestamp": 0.5, "reward": 1.0}], "fps": 10}
    }


def test_label_rewards_rejects_bad_input_in_one_line(workdir, labelled):
    malformed = workdir / "malformed.json"
    malformed.write_text('{"episodes": {"0": {"keypoints": [{"frame_index": 3}]}}')
    before = (labelled / "rewact_extensions" / "reward_keypoints.json").read_text()
    runs = run_scripts(
        ("label_rewards.py", [*dataset_args(labelled, "local/a"), "--config", malformed]),
        (
            "label_rewards.py",
            [*dataset_args(workdir / "nowhere", "local/a"), "--episode", "0", "--keypoint", "3:0.5"],
        ),
    )
    runs[0].check_user_error(str(malformed), "invalid JSON")
    runs[1].check_user_error("nowhere", "does not exist")
    assert (labelled / "rewact_extensions" / "reward_keypoints.json").read_text() == before
    assert not (workdir / "nowhere").exists()


def test_visualise_reward_labels_writes_plot_and_video(workdir, labelled, tmp_path_factory):
    camera_less = tmp_path_factory.mktemp("camera_less") / "env"
    make_local_dataset(camera_less, repo_id="local/env", cameras=(), env_state_dim=4, episode_lengths=(7,))
    out = workdir / "label_media"
    labels, env = run_scripts(
        (
            "visualise_reward_labels.py",
            [*dataset_args(labelled, "local/a"), "--episode-id", "1", "2", "--output-dir", out],
        ),
        (
            "visualise_reward_labels.py",
            [*dataset_args(camera_less, "local/env"), "--output-dir", out / "env"],
        ),
    )
    labels.check()
    env.check()
    for episode in (1, 2):
        assert (out / f"reward_labels_episode_{episode}.png").stat().st_size > 0
        assert mp4_frames(out / f"reward_labels_episode_{episode}.mp4") == (
            LENGTHS_A[episode],
            MEDIA_SIZE_ONE_CAMERA,
        )
    assert not (out / "reward_labels_episode_0.mp4").exists()
    count, (height, width) = mp4_frames(out / "env" / "reward_labels_episode_0.mp4")
    assert count == 7 and height % 2 == 0 and width % 2 == 0 and height < MEDIA_SIZE_ONE_CAMERA[0]


def test_visualise_reward_predictions(workdir, dataset_a, checkpoint):
    out = workdir / "predictions"
    good, unknown = run_scripts(
        (
            "visualise_reward_predictions.py",
            [
                *dataset_args(dataset_a, "local/a"),
                "--episode-id",
                "0",
                "2",
                "--policy-path",
                checkpoint,
                "--output-dir",
                out,
                "--batch-size",
                "8",
            ],
        ),
        (
            "visualise_reward_predictions.py",
            [*dataset_args(dataset_a, "local/a"), "--episode-id", "24", "--policy-path", checkpoint],
        ),
    )
    good.check()
    for episode in (0, 2):
        stem = out / f"reward_predictions_episode_{episode}"
        assert mp4_frames(stem.with_suffix(".mp4")) == (LENGTHS_A[episode], MEDIA_SIZE_ONE_CAMERA)
        assert stem.with_suffix(".png").stat().st_size > 0
        metrics = json.loads(stem.with_suffix(".json").read_text())
        assert metrics["episode_index"] == episode and metrics["num_frames"] == LENGTHS_A[episode]
        assert math.isfinite(metrics["voc"]) and math.isfinite(metrics["mae"]) and 0 <= metrics["mae"] <= 1
        assert len(metrics["values"]) == len(metrics["labels"]) == LENGTHS_A[episode]
        assert f"episode {episode}: {LENGTHS_A[episode]} frames, VOC" in good.stdout
    assert not (out / "reward_predictions_episode_1.json").exists()
    unknown.check_user_error("no episode(s) [24]")


def test_evaluate_reward_model(workdir, dataset_a, checkpoint):
    output = workdir / "metrics.json"
    run = run_script(
        "evaluate_reward_model.py",
        *dataset_args(dataset_a, "local/a"),
        "--policy-path",
        checkpoint,
        "--output",
        output,
    ).check()
    report = json.loads(output.read_text())
    metrics = report["metrics"]
    assert report["episodes"] == [0, 1, 2] and report["outcome_source"] == "dataset"
    assert metrics["num_episodes"] == 3 and metrics["num_successful"] == 2 and metrics["num_failed"] == 1
    for name in ("voc_mean", "voc_median", "mae", "rmse", "terminal_auroc", "precision", "recall", "f1"):
        assert math.isfinite(metrics[name]), name
        assert name in run.stdout
    assert [entry["outcome"] for entry in report["per_episode"]] == [True, False, True]


def test_precompute_advantage_writes_every_frame(advantages_a, dataset_a):
    path, run = advantages_a
    table = read_advantages(path)
    assert len(table) == sum(LENGTHS_A)
    assert table.groupby("episode_index").size().tolist() == list(LENGTHS_A)
    assert 0.2 <= table["positive"].mean() <= 0.4
    assert "3-step advantages of 38 frames in 3 episodes" in run.stdout and "push the block" in run.stdout
    title = "positive fraction by episode outcome and phase (fifths of each episode):\n"
    header, failure, success = run.stdout.split(title)[1].splitlines()[:3]
    assert header.split() == ["1/5", "2/5", "3/5", "4/5", "5/5", "all"]
    assert failure.split()[0] == "failure" and success.split()[0] == "success"
    successes = table[table["episode_index"].isin([0, 2])]["positive"].mean()
    assert float(success.split()[-1]) == pytest.approx(successes, abs=1e-4)


def test_precompute_advantage_relabels_from_earlier_values(
    workdir, dataset_a, advantages_a, advantages_b, checkpoint
):
    """--values-from takes each frame's value from an earlier file instead of the model: with the
    model's own values the table is what a model pass writes; with other values, those are used; a
    file written for another dataset is refused by name."""
    earlier, _ = advantages_a
    common = [*dataset_args(dataset_a, "local/a"), "--policy-path", checkpoint, "--n-step", "3"]
    common += ["--threshold", "-0.01"]
    shifted = read_advantages(earlier)
    shifted["value"] = np.linspace(-0.95, -0.05, len(shifted))  # normalised values, v - 1
    shifted_file = write_advantages(shifted, workdir / "advantages_a_other_values.parquet")
    outputs = {name: workdir / f"relabelled_{name}.parquet" for name in ("model", "earlier", "shifted", "b")}
    no_model = [arg for arg in common if arg not in ("--policy-path", checkpoint)]
    outputs["no_model"] = workdir / "relabelled_no_model.parquet"
    model_pass, from_earlier, from_shifted, from_b, without_model, nothing, model_outcomes = run_scripts(
        ("precompute_advantage.py", [*common, "--output", outputs["model"]]),
        ("precompute_advantage.py", [*common, "--values-from", earlier, "--output", outputs["earlier"]]),
        ("precompute_advantage.py", [*common, "--values-from", shifted_file, "--output", outputs["shifted"]]),
        ("precompute_advantage.py", [*common, "--values-from", advantages_b, "--output", outputs["b"]]),
        ("precompute_advantage.py", [*no_model, "--values-from", earlier, "--output", outputs["no_model"]]),
        ("precompute_advantage.py", [*no_model, "--output", workdir / "never.parquet"]),
        ("precompute_advantage.py", [*no_model, "--values-from", earlier, "--outcomes-from-model"]),
    )
    for run in (model_pass, from_earlier, from_shifted, without_model):
        run.check()
    pd.testing.assert_frame_equal(read_advantages(outputs["earlier"]), read_advantages(outputs["model"]))
    # Relabelling needs no checkpoint; a model pass or the model's success call does.
    pd.testing.assert_frame_equal(read_advantages(outputs["no_model"]), read_advantages(outputs["model"]))
    nothing.check_user_error("--policy-path is required")
    model_outcomes.check_user_error("--policy-path is required")
    assert not (workdir / "never.parquet").exists()
    relabelled = read_advantages(outputs["shifted"])
    assert np.allclose(relabelled["value"], shifted.set_index("index").loc[relabelled["index"], "value"])
    assert (relabelled["positive"] == (relabelled["advantage"] > -0.01)).all()
    from_b.check_user_error(str(advantages_b))
    assert not outputs["b"].exists()


def test_visualise_advantages(workdir, dataset_a, advantages_a):
    out = workdir / "advantage_media"
    run_script(
        "visualise_advantages.py",
        *dataset_args(dataset_a, "local/a"),
        "--episode-id",
        "1",
        "--output-dir",
        out,
    ).check()
    assert mp4_frames(out / "advantages_episode_1.mp4") == (LENGTHS_A[1], MEDIA_SIZE_ONE_CAMERA)
    assert (out / "advantages_episode_1.png").stat().st_size > 0
    assert sorted(path.name for path in out.iterdir()) == [
        "advantages_episode_1.mp4",
        "advantages_episode_1.png",
    ]


# --- precompute_advantage on a rollout dataset (SPEC §7) ------------------------------------------

ROLLOUT_LENGTHS = (10, 12, 9)


def rollout_intervened(episode: int, frame: int) -> bool:
    """A corrector drove frames 2..8 of episode 1."""
    return episode == 1 and 2 <= frame <= 8


@pytest.fixture(scope="module")
def rollout_dataset(workdir) -> Path:
    """As lerobot-rollout's DAgger strategy records it: `intervention`, no next.success, no outcomes."""
    root = workdir / "rollout"
    make_local_dataset(
        root, repo_id="local/rollout", episode_lengths=ROLLOUT_LENGTHS, intervention=rollout_intervened
    )
    return root


def rollout_human_index(frames) -> list[int]:
    """Dataset indices of the frames the corrector drove."""
    drove = [
        rollout_intervened(e, f) for e, f in zip(frames["episode_index"], frames["frame_index"], strict=True)
    ]
    return frames.loc[drove, "index"].tolist()


@pytest.mark.duration(8)
def test_precompute_advantage_on_a_rollout_dataset(workdir, rollout_dataset, checkpoint):
    """Outcomes from a file or the model's success call, else a one-line error naming both; frames a
    corrector drove are positive unless --no-force-human-positive."""
    from rewact_tools.cli import load_reward_model
    from rewact_tools.values import compute_values

    dataset = LeRobotDataset("local/rollout", root=rollout_dataset)
    frames = dataset_frames(dataset)
    human = rollout_human_index(frames)
    policy, preprocessor = load_reward_model(checkpoint, "cpu")
    values = compute_values(policy, dataset, 8, preprocessor=preprocessor, progress=False)
    final = values.sort_values("frame_index").groupby("episode_index")["value"].last()
    second, first = sorted(final)[-2:]
    assert first > second
    threshold = (first + second) / 2  # the model calls exactly one episode a success
    outcomes_file = write_episode_outcomes(workdir / "rollout_outcomes", {0: True, 1: False, 2: True})
    common = [
        *dataset_args(rollout_dataset, "local/rollout"),
        "--policy-path",
        checkpoint,
        "--batch-size",
        "8",
    ]
    out = {name: workdir / f"rollout_{name}.parquet" for name in ("none", "model", "file")}
    neither, model, from_file, usage = run_scripts(
        ("precompute_advantage.py", [*common, "--output", out["none"]]),
        (
            "precompute_advantage.py",
            [
                *common,
                "--outcomes-from-model",
                "--success-threshold",
                repr(threshold),
                "--output",
                out["model"],
            ],
        ),
        (
            "precompute_advantage.py",
            [*common, "--outcomes", outcomes_file, "--no-force-human-positive", "--output", out["file"]],
        ),
        ("precompute_advantage.py", [*common, "--success-threshold", "0.5"]),
        without_robocandywrapper=True,  # advantages, control modes and outcomes need none of it
    )
    neither.check_user_error("has no episode outcomes", "--outcomes PATH", "--outcomes-from-model")
    assert not out["none"].exists()
    usage.check_user_error("--success-threshold needs --outcomes-from-model")

    model.check()
    called = {int(episode): bool(value >= threshold) for episode, value in final.items()}
    expected = compute_advantages(frames, values, called, human_index=human)
    pd.testing.assert_frame_equal(read_advantages(out["model"]), expected)
    unforced = compute_advantages(frames, values, called)
    forced = int((~unforced.loc[unforced["index"].isin(human), "positive"]).sum())
    assert "episode outcomes (model: final progress >= " in model.stdout
    assert ": 1 success, 2 failure, 0 unknown" in model.stdout
    assert f"human-controlled frames: {len(human)}, of which {forced} forced positive" in model.stdout

    from_file.check()
    table = read_advantages(out["file"])
    pd.testing.assert_frame_equal(table, compute_advantages(frames, values, {0: True, 1: False, 2: True}))
    # Episode 1 failed, so without forcing its corrected frames are all negative.
    assert not table.loc[table["index"].isin(human), "positive"].any() and len(human) == 7
    assert f"episode outcomes ({outcomes_file}): 2 success, 1 failure, 0 unknown" in from_file.stdout
    assert "human-controlled frames" not in from_file.stdout


@pytest.mark.duration(8)
def test_precompute_advantage_credits_takeovers(workdir, rollout_dataset, checkpoint):
    """--credit segment, --pre-takeover-window and --threshold-by value_bin reach compute_advantages,
    and the positive fraction is printed by frame kind; takeovers need the human frames."""
    from rewact_tools.cli import load_reward_model
    from rewact_tools.values import compute_values

    dataset = LeRobotDataset("local/rollout", root=rollout_dataset)
    frames = dataset_frames(dataset)
    human = rollout_human_index(frames)
    policy, preprocessor = load_reward_model(checkpoint, "cpu")
    values = compute_values(policy, dataset, 8, preprocessor=preprocessor, progress=False)
    outcomes = {0: True, 1: True, 2: False}
    outcomes_file = write_episode_outcomes(workdir / "rollout_outcomes_credit", outcomes)
    output = workdir / "rollout_segment.parquet"
    common = [
        *dataset_args(rollout_dataset, "local/rollout"),
        *("--policy-path", checkpoint, "--outcomes", outcomes_file, "--credit", "segment"),
    ]
    in_seconds = workdir / "rollout_segment_seconds.parquet"
    # A copy whose rollouts sidecar says its rounds were corrected after 2 stalled steps.
    with_patience = workdir / "rollout_with_patience"
    shutil.copytree(rollout_dataset, with_patience)
    sidecar = with_patience / ROLLOUTS_SIDECAR
    sidecar.parent.mkdir(exist_ok=True)
    sidecar.write_text(
        json.dumps({"rounds": [{"round": 0, "corrections": {"stall_steps": 2}}], "episodes": []})
    )
    from_patience = workdir / "rollout_segment_stall.parquet"
    split = ("--threshold-by", "value_bin", "--value-bins", "2", "--positive-fraction", "0.5")
    credited, unforced, seconds, stall, no_sidecar = run_scripts(
        (
            "precompute_advantage.py",
            [*common, "--pre-takeover-window", "2", *split, "--output", output],
        ),
        ("precompute_advantage.py", [*common, "--no-force-human-positive"]),
        (
            "precompute_advantage.py",
            [*common, "--n-step-seconds", "0.3", "--successes-positive", "--output", in_seconds],
        ),
        (
            "precompute_advantage.py",
            [
                *dataset_args(with_patience, "local/rollout"),
                *common[len(dataset_args(rollout_dataset, "local/rollout")) :],
                *("--pre-takeover-window", "stall", *split, "--output", from_patience),
            ],
        ),
        ("precompute_advantage.py", [*common, "--pre-takeover-window", "stall"]),
        without_robocandywrapper=True,
    )
    stall.check()
    assert "positive fraction by frame kind (pre-takeover window 2 frames)" in stall.stdout
    no_sidecar.check_user_error("--pre-takeover-window stall:", "rollouts.json is missing")
    seconds.check()  # 0.3 s at the dataset's 10 fps: N = 3 frames
    # --successes-positive: episode 0, a success without a takeover, is positive throughout.
    options = {"n_steps": 3, "human_index": human, "credit": "segment"}
    kept = compute_advantages(frames, values, outcomes, successes_positive=True, **options)
    pd.testing.assert_frame_equal(read_advantages(in_seconds), kept)
    ranked = compute_advantages(frames, values, outcomes, **options)
    assert kept.loc[kept["episode_index"] == 0, "positive"].all()
    assert not ranked.loc[ranked["episode_index"] == 0, "positive"].all()
    assert "3-step advantages" in seconds.stdout
    credited.check()
    options = {"credit": "segment", "pre_takeover_window": 2, "threshold_by": "value_bin", "value_bins": 2}
    expected = compute_advantages(
        frames, values, outcomes, positive_fraction=0.5, human_index=human, **options
    )
    table = read_advantages(output)
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(read_advantages(from_patience), expected)
    # Episode 1's policy frames 0-1 are the pre-takeover window: negative, and printed as such.
    window = frames.loc[(frames["episode_index"] == 1) & (frames["frame_index"] < 2), "index"]
    assert not table.loc[table["index"].isin(window), "positive"].any()
    # Human frames at or below their value bin's threshold are the ones forcing made positive.
    unforced_positive = table["advantage"] > frame_thresholds(table, 0.5, "value_bin", 2)
    forced = int((table["index"].isin(human) & ~unforced_positive).sum())
    assert f"human-controlled frames: {len(human)}, of which {forced} forced positive" in credited.stdout
    assert "positive fraction by frame kind (pre-takeover window 2 frames)" in credited.stdout
    for kind in ("correction", "pre_takeover", "rescued_rollout", "rollout"):
        assert kind in credited.stdout
    unforced.check_user_error("--credit segment and --pre-takeover-window read the takeovers")


def test_calibrate_success_writes_the_threshold_that_the_model_calls_use(
    workdir, dataset_a, checkpoint, rollout_dataset
):
    """calibrate_success.py picks the best-F1 threshold on dataset a's outcomes and writes it into
    the checkpoint, which still loads; precompute_advantage.py --outcomes-from-model then uses it."""
    from rewact_tools.cli import load_reward_model
    from rewact_tools.metrics import calibrate_success_threshold
    from rewact_tools.values import compute_values

    calibrated = workdir / "calibrated_model"
    shutil.copytree(checkpoint, calibrated)
    run = run_script(
        "calibrate_success.py", *dataset_args(dataset_a, "local/a"), "--policy-path", calibrated
    ).check()
    policy, preprocessor = load_reward_model(calibrated, "cpu")
    values = compute_values(
        policy, LeRobotDataset("local/a", root=dataset_a), 8, preprocessor=preprocessor, progress=False
    )
    final = values.sort_values("frame_index").groupby("episode_index")["value"].last()
    expected = calibrate_success_threshold(final.loc[[0, 1, 2]].to_numpy(), np.array([True, False, True]))
    assert policy.config.success_threshold == pytest.approx(expected)
    assert RewACTPolicy.from_pretrained(calibrated).config.success_threshold == pytest.approx(expected)
    assert "calibrated threshold" in run.stdout and "default threshold 0.9000" in run.stdout
    model = run_script(
        "precompute_advantage.py",
        *dataset_args(rollout_dataset, "local/rollout"),
        *("--policy-path", calibrated, "--outcomes-from-model", "--output", workdir / "calibrated.parquet"),
    ).check()
    assert f"final progress >= {expected:g}, calibrated on the checkpoint's training outcomes" in model.stdout
