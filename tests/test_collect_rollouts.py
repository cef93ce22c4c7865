"""Rollouts as LeRobot datasets (scripts/collect_rollouts.py, rewact_tools.rollouts): tiny policies
rolled out in gym-pusht for a few short episodes, in-process; the script's flags and one-line errors
through its own `main`.

Checkpoints are built directly (random weights, made-up normalisation statistics) and saved with
their processors, as `lerobot-train` saves them: what is tested is the rollout machinery, not the
policies.
"""

from __future__ import annotations

import json
import math
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact import RewACTConfig, RewACTPolicy, make_rewact_pre_post_processors
from rewact_tools.atomic import replace_directory
from rewact_tools.cli import load_policy_with_processors, load_reward_model, run_cli
from rewact_tools.pusht import FEATURES as PUSHT_FEATURES
from rewact_tools.pusht import SETTINGS, make_env, rollout_episode
from rewact_tools.pusht import TASK as PUSHT_TASK
from rewact_tools.rollouts import (
    ROLLOUTS_SIDECAR,
    CorrectionSettings,
    EpisodeCorrections,
    PolicyRunner,
    ProgressModel,
    RolloutEnv,
    RolloutSettings,
    collect_rollouts,
    make_env_spec,
    roll_out,
)
from rewact_tools.rollouts.recorder import recorded_stall_patience, staging_folder
from rewact_tools.values import compute_values

from local_datasets import make_local_dataset
from policy_helpers import TINY_ACT
from subprocess_helpers import REPO, SUBPROCESS_ENV

SCRIPT = REPO / "scripts" / "collect_rollouts.py"
KEYPOINTS = "environment_state_agent_pos"
PIXELS = "pixels_agent_pos"
MAX_STEPS = 8
_STATE = {"observation.state": PolicyFeature(FeatureType.STATE, (2,))}
_KEYPOINTS = {"observation.environment_state": PolicyFeature(FeatureType.ENV, (16,))}
_IMAGE = {"observation.image": PolicyFeature(FeatureType.VISUAL, (3, 96, 96))}
_ACTION = {"action": PolicyFeature(FeatureType.ACTION, (2,))}
_STATS = {
    "observation.state": {"mean": torch.full((2,), 256.0), "std": torch.full((2,), 100.0)},
    "observation.environment_state": {"mean": torch.full((16,), 256.0), "std": torch.full((16,), 100.0)},
    "observation.image": {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)},
    "action": {"mean": torch.full((2,), 256.0), "std": torch.full((2,), 100.0)},
}


def _save(folder: Path, policy, processors) -> Path:
    for component in (policy, *processors):
        component.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """`rewact` (keypoints + state), `act` (LeRobot's own ACT, the same inputs) and `image`
    (RewACT on the camera + state) checkpoint folders."""
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.act.processor_act import make_act_pre_post_processors

    base = tmp_path_factory.mktemp("checkpoints")
    keypoint = {"input_features": {**_STATE, **_KEYPOINTS}, "output_features": _ACTION}
    rewact = RewACTConfig(**TINY_ACT, **keypoint)
    act = ACTConfig(**TINY_ACT, **keypoint)
    image = RewACTConfig(**TINY_ACT, input_features={**_STATE, **_IMAGE}, output_features=_ACTION)
    return {
        "rewact": _save(
            base / "rewact", RewACTPolicy(rewact), make_rewact_pre_post_processors(rewact, _STATS)
        ),
        "act": _save(base / "act", ACTPolicy(act), make_act_pre_post_processors(act, _STATS)),
        "image": _save(base / "image", RewACTPolicy(image), make_rewact_pre_post_processors(image, _STATS)),
    }


def runner(path: Path) -> PolicyRunner:
    return PolicyRunner(*load_policy_with_processors(path, "cpu"))


def watcher(path: Path) -> ProgressModel:
    return ProgressModel(*load_reward_model(path, "cpu"))


def collect(
    root: Path, policy: PolicyRunner, obs_type: str = KEYPOINTS, max_steps: int = MAX_STEPS, **options
):
    """`collect_rollouts` in gym-pusht; `options` are `RolloutSettings` fields and keyword arguments."""
    names = set(RolloutSettings.__dataclass_fields__)
    settings = RolloutSettings(**{key: value for key, value in options.items() if key in names})
    rest = {key: value for key, value in options.items() if key not in names}
    spec = make_env_spec("pusht", obs_type=obs_type, max_steps=max_steps)
    return collect_rollouts(root, policy, spec, settings, progress=False, **rest)


def files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()
    }


def sidecar(root: Path) -> dict:
    return json.loads((root / ROLLOUTS_SIDECAR).read_text())


def columns(dataset: LeRobotDataset) -> dict[str, np.ndarray]:
    """Every column of the dataset's table, frames in index order."""
    return dataset.hf_dataset.with_format("numpy")[:]


def episode_column(dataset: LeRobotDataset, key: str, episode: int) -> np.ndarray:
    table = columns(dataset)
    return table[key][table["episode_index"] == episode]


@pytest.fixture(scope="module")
def keypoint_round(checkpoints, tmp_path_factory):
    """Three keypoint episodes of the RewACT policy, watched by the same checkpoint as reward model."""
    root = tmp_path_factory.mktemp("rollouts") / "keypoints"
    records = collect(
        root,
        runner(checkpoints["rewact"]),
        episodes=3,
        batch_size=2,
        seed=5,
        reward_model=watcher(checkpoints["rewact"]),
        round_info={"policy_path": str(checkpoints["rewact"])},
    )
    return root, records


def test_rollout_dataset_has_lerobots_keys_with_their_dtypes_and_shapes(keypoint_round, checkpoints):
    root, records = keypoint_round
    dataset = LeRobotDataset("local/rollouts", root=root)
    # The built-in PushT dataset's schema (without the camera, for keypoint observations), plus
    # LeRobot's intervention flag and the reward model's columns.
    expected = {
        key: (spec["dtype"], spec["shape"])
        for key, spec in PUSHT_FEATURES.items()
        if key != "observation.image"
    }
    expected |= {
        "intervention": ("bool", (1,)),
        "rewact.progress": ("float32", (1,)),
        "rewact.success": ("bool", (1,)),
    }
    for key, (dtype, shape) in expected.items():
        assert (dataset.meta.features[key]["dtype"], tuple(dataset.meta.features[key]["shape"])) == (
            dtype,
            shape,
        )
    assert "observation.image" not in dataset.meta.features
    assert dataset.meta.total_episodes == 3 and dataset.meta.fps == 10
    item = dataset[0]
    assert (
        item["observation.environment_state"].dtype == torch.float32
        and item["intervention"].dtype == torch.bool
    )
    assert item["task"] == PUSHT_TASK  # one task with the built-in PushT data

    # Episode k has seed 5 + k; each ends at the step limit with next.done on its last frame only.
    assert [entry["seed"] for entry in sidecar(root)["episodes"]] == [5, 6, 7]
    assert [record.episode_index for record in records] == [0, 1, 2]
    for episode, record in enumerate(records):
        done = episode_column(dataset, "next.done", episode).ravel()
        assert done[-1] and not done[:-1].any() and len(done) == record.length == MAX_STEPS
        assert not episode_column(dataset, "intervention", episode).any()
        # The first frame is the env's reset observation for the episode's seed.
        reset, _ = make_env(MAX_STEPS).reset(seed=record.seed)
        np.testing.assert_array_equal(
            episode_column(dataset, "observation.environment_state", episode)[0],
            reset["environment_state"].astype(np.float32),
        )
        assert bool(episode_column(dataset, "next.success", episode)[-1]) == record.success

    # rewact.progress is the reward model's value of each frame's observation, as compute_values
    # gives it on the written dataset; rewact.success is progress >= the threshold.
    model = watcher(checkpoints["rewact"])
    values = compute_values(model.policy, dataset, preprocessor=model.preprocessor, progress=False)
    progress = np.concatenate([episode_column(dataset, "rewact.progress", e).ravel() for e in range(3)])
    np.testing.assert_allclose(progress, values["value"].to_numpy(), atol=1e-5)
    success = np.concatenate([episode_column(dataset, "rewact.success", e).ravel() for e in range(3)])
    np.testing.assert_array_equal(success, progress >= RolloutSettings(episodes=1).success_threshold)
    assert [record.final_progress for record in records] == pytest.approx(
        [episode_column(dataset, "rewact.progress", e)[-1] for e in range(3)]
    )


def test_the_same_arguments_give_the_same_episodes(keypoint_round, checkpoints, tmp_path):
    root, _ = keypoint_round
    collect(
        tmp_path / "again",
        runner(checkpoints["rewact"]),
        episodes=3,
        batch_size=2,
        seed=5,
        reward_model=watcher(checkpoints["rewact"]),
    )
    first = columns(LeRobotDataset("local/rollouts", root=root))
    again = columns(LeRobotDataset("local/rollouts", root=tmp_path / "again"))
    for key in ("observation.environment_state", "action", "next.reward", "rewact.progress"):
        np.testing.assert_array_equal(first[key], again[key])


def test_forced_corrections_record_the_experts_actions(checkpoints, tmp_path):
    steps = 12
    expert_runs = [
        rollout_episode(make_env(steps), SETTINGS["clean"], seed, steps, render=False) for seed in (3, 4)
    ]
    expert_actions = [np.stack([frame["action"] for frame in run.frames]) for run in expert_runs]

    def corrected_everywhere(name: str, episodes: int, correction_steps: int):
        records = collect(
            tmp_path / name,
            runner(checkpoints["rewact"]),
            max_steps=steps,
            episodes=episodes,
            batch_size=2,
            seed=3,
            corrections=CorrectionSettings(random_rate=1.0, steps=correction_steps),
        )
        dataset = LeRobotDataset("local/rollouts", root=tmp_path / name)
        for episode, record in enumerate(records):
            assert episode_column(dataset, "intervention", episode).all()
            assert record.interventions == record.length
        return dataset, records

    # Taking over at the first step for the whole episode: exactly the built-in dataset's clean
    # expert episode for that seed.
    dataset, records = corrected_everywhere("whole", episodes=2, correction_steps=100)
    for episode, expected in enumerate(expert_actions):
        np.testing.assert_array_equal(episode_column(dataset, "action", episode), expected)
        assert records[episode].takeovers == 1
    # Three-step corrections, retaken at once: the first three actions are the clean episode's,
    # then each takeover plans afresh.
    dataset, records = corrected_everywhere("short", episodes=1, correction_steps=3)
    np.testing.assert_array_equal(episode_column(dataset, "action", 0)[:3], expert_actions[0][:3])
    assert records[0].takeovers == math.ceil(steps / 3)


class _Scripted:
    """A corrector that counts its takeovers and returns a fixed action."""

    def __init__(self):
        self.takeovers = 0

    def take_over(self):
        self.takeovers += 1

    def act(self):
        return np.array([1.0, 2.0], dtype=np.float32)


def test_a_stall_in_progress_triggers_a_correction_for_m_steps_then_hands_back():
    corrections = EpisodeCorrections(
        CorrectionSettings(stall_steps=2, stall_epsilon=0.05, steps=2), _Scripted(), 0
    )
    # Rises of more than epsilon keep the policy driving; smaller ones do not count.
    driven = [corrections.step(p) is not None for p in (0.1, 0.2, 0.3, 0.33, 0.34, 0.36)]
    #                                                   rise rise rise  1    2 -> corrector, 2 steps
    assert driven == [False, False, False, False, True, True]
    assert corrections.policy_reset_due and corrections.takeovers == 1
    assert corrections.stall.best == pytest.approx(0.36)  # a rise under correction raises the bar
    # Back with the policy, the stall count starts again: two more steps without a rise.
    assert corrections.step(0.37) is None
    assert corrections.step(0.38) is not None and corrections.takeovers == 2


def test_takeovers_stop_at_the_per_episode_limit():
    settings = CorrectionSettings(stall_steps=1, steps=1, max_takeovers=2)
    corrections = EpisodeCorrections(settings, _Scripted(), 0)
    driven = [corrections.step(0.0) is not None for _ in range(8)]
    assert sum(driven) == 2 and corrections.takeovers == 2 and corrections.corrector.takeovers == 2
    with pytest.raises(ValueError, match="max_takeovers must be at least 1"):
        CorrectionSettings(stall_steps=1, max_takeovers=0)


def test_stall_corrections_in_a_rollout(checkpoints, tmp_path):
    # The untrained reward model's progress barely moves: the corrector takes over once two steps
    # have passed without a rise, drives two steps, and hands back.
    records = collect(
        tmp_path / "stall",
        runner(checkpoints["rewact"]),
        max_steps=10,
        episodes=1,
        reward_model=watcher(checkpoints["rewact"]),
        corrections=CorrectionSettings(stall_steps=2, stall_epsilon=0.05, steps=2),
    )
    flags = episode_column(LeRobotDataset("local/rollouts", root=tmp_path / "stall"), "intervention", 0)
    assert not flags[:2].any() and flags[2:4].all() and not flags[4]
    assert records[0].takeovers >= 2 and records[0].interventions == int(flags.sum())
    # The patience is recorded: it is the stall before each takeover (the default pre-takeover window).
    assert recorded_stall_patience(tmp_path / "stall") == 2


def test_the_envs_own_progress_drives_corrections_without_a_reward_model(checkpoints, tmp_path):
    """`stall_signal="env"`: PushT's coverage is the stall signal (0 before the first step), and each
    record keeps the highest coverage the env reported."""
    settings = CorrectionSettings(stall_steps=2, stall_signal="env", steps=2)
    records = collect(
        tmp_path / "env", runner(checkpoints["rewact"]), max_steps=12, episodes=2, corrections=settings
    )
    dataset = LeRobotDataset("local/rollouts", root=tmp_path / "env")
    for episode, record in enumerate(records):
        assert record.takeovers >= 1 and record.interventions == int(
            episode_column(dataset, "intervention", episode).sum()
        )
        # gym-pusht's reward is the coverage over its success threshold 0.95, clipped at 1.
        rewards = episode_column(dataset, "next.reward", episode)
        assert record.max_env_progress == pytest.approx(0.95 * rewards.max(), abs=1e-6)
    with pytest.raises(ValueError, match="needs --reward-model"):
        collect(
            tmp_path / "model",
            runner(checkpoints["rewact"]),
            episodes=1,
            corrections=CorrectionSettings(stall_steps=2),
        )
    with pytest.raises(ValueError, match="--stall-signal must be one of"):
        CorrectionSettings(stall_steps=2, stall_signal="oracle")


def test_in_memory_rollouts_are_what_collect_rollouts_writes(keypoint_round, checkpoints):
    root, records = keypoint_round
    settings = RolloutSettings(episodes=3, batch_size=2, seed=5)
    spec = make_env_spec("pusht", obs_type=KEYPOINTS, max_steps=MAX_STEPS)
    episodes = roll_out(
        runner(checkpoints["rewact"]), spec, settings, watcher(checkpoints["rewact"]), progress=False
    )
    dataset = LeRobotDataset("local/rollouts", root=root)
    assert [record.as_dict() for _, record in episodes] == [record.as_dict() for record in records]
    for episode, (frames, _) in enumerate(episodes):
        for key in ("action", "observation.environment_state", "rewact.progress", "intervention"):
            np.testing.assert_array_equal(
                np.stack([frame[key] for frame in frames]).reshape(
                    -1, *episode_column(dataset, key, episode).shape[1:]
                ),
                episode_column(dataset, key, episode),
            )
    # Other reset seeds: seed 7 alone is the round's last batch, its third episode.
    (frames, record), *_ = roll_out(runner(checkpoints["rewact"]), spec, settings, seeds=[7], progress=False)
    assert record.seed == 7
    np.testing.assert_array_equal(
        np.stack([frame["action"] for frame in frames]), episode_column(dataset, "action", 2)
    )


def test_an_ended_episodes_env_is_neither_stepped_nor_reset(checkpoints):
    spec = make_env_spec("pusht", obs_type=KEYPOINTS, max_steps=MAX_STEPS)
    env = RolloutEnv(spec, 2, runner(checkpoints["rewact"]).config)
    try:
        start = env.reset([0, 1])["observation.state"]
        moved = env.step(np.full((2, 2), 300.0, dtype=np.float32), np.array([True, False]))
        assert not torch.equal(moved.observation["observation.state"][0], start[0])
        assert torch.equal(moved.observation["observation.state"][1], start[1])
        assert list(moved.done) == [False, True] and moved.reward[1] == 0.0 and not moved.success[1]
        assert moved.progress is not None and np.isnan(moved.progress[1]) and moved.progress[0] >= 0.0
    finally:
        env.close()


class _CountingRunner(PolicyRunner):
    resets = 0

    def reset(self):
        type(self).resets += 1
        super().reset()


def test_the_policy_queue_is_emptied_whenever_control_comes_back(checkpoints, tmp_path):
    policy = runner(checkpoints["rewact"])
    counting = _CountingRunner(policy.policy, policy.preprocessor, policy.postprocessor)
    collect(
        tmp_path / "random",
        counting,
        max_steps=20,
        episodes=2,
        batch_size=1,
        seed=0,
        corrections=CorrectionSettings(random_rate=0.2, steps=2),
    )
    dataset = LeRobotDataset("local/rollouts", root=tmp_path / "random")
    handbacks = 0
    for episode in range(2):
        flags = episode_column(dataset, "intervention", episode).ravel()
        assert flags.any() and not flags.all()
        handbacks += int(np.sum(flags[:-1] & ~flags[1:]))
    # One reset per episode start, one per return of control to the policy (batches of one env).
    assert _CountingRunner.resets == 2 + handbacks


def test_append_adds_a_round_and_leaves_earlier_episodes_byte_identical(checkpoints, tmp_path):
    root = tmp_path / "rounds"
    collect(root, runner(checkpoints["act"]), episodes=2, batch_size=2, seed=0)  # LeRobot's own ACT
    before = files(root)
    frames_before = columns(LeRobotDataset("local/rollouts", root=root))

    records = collect(root, runner(checkpoints["rewact"]), episodes=2, batch_size=2, seed=10, append=True)
    after = files(root)
    dataset = LeRobotDataset("local/rollouts", root=root)
    assert dataset.meta.total_episodes == 4 and [record.episode_index for record in records] == [2, 3]
    earlier = [name for name in before if name.startswith(("data/", "meta/episodes/"))]
    assert earlier and all(after[name] == before[name] for name in earlier)
    table = columns(dataset)
    for key in ("action", "observation.environment_state", "index", "episode_index"):
        np.testing.assert_array_equal(table[key][: len(frames_before[key])], frames_before[key])
    log = sidecar(root)
    assert [entry["round"] for entry in log["rounds"]] == [0, 1]
    assert recorded_stall_patience(root) is None  # no round corrected on stalls
    assert [(entry["episode_index"], entry["round"], entry["seed"]) for entry in log["episodes"]] == [
        (0, 0, 0), (1, 0, 1), (2, 1, 10), (3, 1, 11)
    ]  # fmt: skip

    # Other features (a reward model's columns) cannot be appended; nothing changes.
    with pytest.raises(ValueError, match="cannot append to .*'rewact.progress' is not in the dataset"):
        collect(
            root,
            runner(checkpoints["rewact"]),
            episodes=1,
            append=True,
            reward_model=watcher(checkpoints["rewact"]),
        )
    assert files(root) == after and not staging_folder(root).exists()


class _CrashError(RuntimeError):
    pass


class _CrashingRunner(PolicyRunner):
    """Acts normally for `calls` steps, then raises, as a crash mid-episode would."""

    calls = 0

    def act(self, observation):
        type(self).calls -= 1
        if type(self).calls < 0:
            raise _CrashError("simulated crash")
        return super().act(observation)


def test_a_crash_mid_episode_loses_nothing_committed(checkpoints, tmp_path):
    root = tmp_path / "crash"
    collect(root, runner(checkpoints["rewact"]), episodes=1, seed=0)
    before = files(root)
    policy = runner(checkpoints["rewact"])
    crashing = _CrashingRunner(policy.policy, policy.preprocessor, policy.postprocessor)

    _CrashingRunner.calls = MAX_STEPS + 3  # into the second batch
    with pytest.raises(_CrashError):
        collect(root, crashing, episodes=4, batch_size=1, seed=1, append=True)
    assert files(root) == before and not staging_folder(root).exists()

    # Committing after every episode keeps the episodes finished before the crash.
    _CrashingRunner.calls = MAX_STEPS + 3
    with pytest.raises(_CrashError):
        collect(root, crashing, episodes=4, batch_size=1, seed=1, append=True, commit_every=1)
    after = files(root)
    assert all(after[name] == before[name] for name in before if name.startswith(("data/", "meta/episodes/")))
    assert LeRobotDataset("local/rollouts", root=root).meta.total_episodes == 2
    assert [entry["seed"] for entry in sidecar(root)["episodes"]] == [0, 1]

    # A staging folder left behind by a killed run stops the next run, naming it.
    staging_folder(root).mkdir()
    with pytest.raises(FileExistsError, match="another collect_rollouts run is writing"):
        collect(root, runner(checkpoints["rewact"]), episodes=1, append=True)
    assert LeRobotDataset("local/rollouts", root=root).meta.total_episodes == 2


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "file").write_text(text)
    return path


def test_replacing_a_folder_is_one_exchange_and_without_one_two_renames(tmp_path, monkeypatch):
    import errno

    from rewact_tools import atomic

    target = _folder(tmp_path / "target", "old")
    replace_directory(_folder(tmp_path / "new", "new"), target, tmp_path / "previous")
    assert (target / "file").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["target"]

    def unsupported(first, second):
        raise OSError(errno.ENOTSUP, "no exchange here")

    monkeypatch.setattr(atomic, "exchange_paths", unsupported)
    with pytest.warns(RuntimeWarning, match="cannot exchange folders atomically"):
        replace_directory(_folder(tmp_path / "newer", "newer"), target, tmp_path / "previous")
    assert (target / "file").read_text() == "newer" and sorted(p.name for p in tmp_path.iterdir()) == [
        "target"
    ]


def test_camera_observations_are_recorded_as_images(checkpoints, tmp_path):
    collect(
        tmp_path / "pixels", runner(checkpoints["image"]), obs_type=PIXELS, max_steps=3, episodes=1, seed=2
    )
    dataset = LeRobotDataset("local/rollouts", root=tmp_path / "pixels")
    feature = dataset.meta.features["observation.image"]
    assert feature["dtype"] == "image" and tuple(feature["shape"]) == (96, 96, 3)
    assert "observation.environment_state" not in dataset.meta.features
    # The image is gym-pusht's own pixels observation for the seed, as LeRobot reads it back.
    import gymnasium as gym

    env = gym.make("gym_pusht/PushT-v0", obs_type=PIXELS, render_mode="rgb_array")
    pixels = env.reset(seed=2)[0]["pixels"]
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(dataset[0]["observation.image"], expected, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ script


def test_script_help_needs_no_torch():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['collect_rollouts.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules, 'lerobot' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False False"
    for flag in (
        "--policy-path",
        "--env-type",
        "--batch-size",
        "--reward-model",
        "--correct-random",
        "--append",
    ):
        assert flag in result.stdout


def run_main(capsys, *args) -> tuple[int, str, str]:
    """Run the script's `main` in this process through `run_cli`: (exit status, stdout, stderr)."""
    main = runpy.run_path(str(SCRIPT))["main"]
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, [str(arg) for arg in args])
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_script_prints_the_reward_models_detection_scores(checkpoints, tmp_path, capsys):
    status, out, _ = run_main(
        capsys,
        *("--policy-path", checkpoints["rewact"], "--reward-model", checkpoints["rewact"]),
        *("--obs-type", KEYPOINTS, "--max-steps", 4, "--episodes", 2, "--batch-size", 2),
        *("--root", tmp_path / "cli", "--end-on-model-success", "--success-threshold", 0.05),
    )
    assert status == 0
    summary = json.loads(out[out.index("{\n") : out.index("\n}") + 2])
    assert summary["episodes"] == 2 and set(summary["success_detection"]) == {"precision", "recall", "f1"}
    assert "precision" in out and "recall" in out
    # Progress is always above 0.05: the model calls success on the first frame and ends each episode.
    log = sidecar(tmp_path / "cli")
    assert [(entry["length"], entry["ended_by"], entry["model_success"]) for entry in log["episodes"]] == [
        (1, "model", True),
        (1, "model", True),
    ]


def test_script_corrects_on_the_envs_own_progress_without_a_reward_model(checkpoints, tmp_path, capsys):
    status, _, _ = run_main(
        capsys,
        *("--policy-path", checkpoints["rewact"], "--obs-type", KEYPOINTS, "--max-steps", 10),
        *("--episodes", 1, "--root", tmp_path / "cli", "--correct-stall", 2, "--stall-signal", "env"),
        *("--correct-steps", 2),
    )
    assert status == 0
    (episode,) = sidecar(tmp_path / "cli")["episodes"]
    assert episode["takeovers"] >= 1 and episode["interventions"] >= 2 and episode["max_env_progress"] >= 0.0
    assert sidecar(tmp_path / "cli")["rounds"][0]["corrections"]["stall_signal"] == "env"


def test_script_rejects_bad_input_in_one_line(checkpoints, tmp_path, capsys):
    keypoint_policy = ("--policy-path", checkpoints["rewact"], "--obs-type", KEYPOINTS, "--max-steps", 4)
    not_rollouts = make_local_dataset(tmp_path / "other", episode_lengths=(3,)).root
    no_processors = tmp_path / "no_processors"
    no_processors.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(checkpoints["rewact"] / name, no_processors)
    cases = [
        ((*keypoint_policy, "--env-type", "nowhere", "--root", tmp_path / "a"), "unknown env type 'nowhere'"),
        (("--policy-path", not_rollouts, "--root", tmp_path / "b"), "holds no policy checkpoint"),
        (("--policy-path", no_processors, "--root", tmp_path / "b"), "has no saved processors"),
        (
            (
                "--policy-path",
                checkpoints["rewact"],
                "--obs-type",
                PIXELS,
                "--max-steps",
                4,
                "--root",
                tmp_path / "c",
            ),
            "lacks the checkpoint's input feature(s) ['observation.environment_state']",
        ),
        (
            (*keypoint_policy, "--reward-model", checkpoints["act"], "--root", tmp_path / "d"),
            "without a value head",
        ),
        ((*keypoint_policy, "--correct-stall", 3, "--root", tmp_path / "e"), "needs --reward-model"),
        ((*keypoint_policy, "--correct-random", 1.5, "--root", tmp_path / "f"), "--correct-random must be"),
        ((*keypoint_policy, "--root", not_rollouts), "already exists; pass --append"),
        ((*keypoint_policy, "--root", not_rollouts, "--append"), "was not written by collect_rollouts"),
        (
            (*keypoint_policy, "--env-type", "aloha", "--root", tmp_path / "g", "--correct-random", 0.5),
            "env type 'aloha' has none",
        ),
    ]
    for args, fragment in cases:
        status, _, err = run_main(capsys, *args)
        assert status == 2, (args, err)
        assert fragment in one_error_line(err), (args, err)
    assert not any(path.name.endswith(".staging") for path in tmp_path.iterdir())
