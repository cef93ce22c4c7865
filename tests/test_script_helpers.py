"""The rewact_tools modules behind scripts/: argument and error handling, keypoint configs, MP4
writing, plots, advantage display and training options. In-process and fast; the scripts
themselves run end to end in test_scripts.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pandas as pd
import pytest

from lerobot_policy_rewact import RewACTConfig
from rewact_tools.advantage_display import check_matches_dataset, positive_by_phase, threshold_band
from rewact_tools.cli import (
    CliError,
    check_local_dataset,
    checkpoint_model_dir,
    make_parser,
    one_line,
    run_cli,
    select_episodes,
)
from rewact_tools.keypoint_config import (
    KeypointConfigError,
    dense_labels,
    parse_keypoint_flag,
    read_keypoint_config,
    sampled_values,
)
from rewact_tools.offline import offline_if_local
from rewact_tools.plotting import Curve, CurvePanel, PanelSpec, _runs, episode_video_frames, write_figure
from rewact_tools.reward_evaluation import episode_report, policy_labels
from rewact_tools.training import resolve_reward
from rewact_tools.training_options import PluginOptions, split_list
from rewact_tools.video import pad_to_even, to_uint8_rgb, write_mp4


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# ---------------------------------------------------------------- cli


def test_run_cli_turns_expected_errors_into_one_line_and_exit_2(capsys):
    def fails(_argv):
        raise KeyError("episode 7\nis unknown")

    with pytest.raises(SystemExit) as exit_:
        run_cli(fails, [])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: episode 7 is unknown\n"

    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda _argv: 0, [])
    assert exit_.value.code == 0


def test_run_cli_lets_programming_errors_through():
    def broken(_argv):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        run_cli(broken, [])


def test_usage_errors_are_one_line(capsys):
    parser = make_parser("doc")
    parser.add_argument("--n", type=int, required=True)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--n", "x"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: argument --n: invalid int value: 'x'")


def test_one_line_drops_keyerror_quotes():
    assert one_line(KeyError("no column 'x'")) == "no column 'x'"
    assert one_line(ValueError("a\n  b")) == "a b"


def test_local_dataset_and_checkpoint_paths_are_checked(tmp_path):
    with pytest.raises(CliError, match="does not exist"):
        check_local_dataset(tmp_path / "missing")
    with pytest.raises(CliError, match="info.json is missing"):
        check_local_dataset(tmp_path)
    model = tmp_path / "run" / "checkpoints" / "last" / "pretrained_model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    with pytest.raises(CliError, match="holds no policy checkpoint"):
        checkpoint_model_dir(tmp_path / "run")
    (model / "model.safetensors").write_bytes(b"")
    for path in (model, model.parent, tmp_path / "run"):
        assert checkpoint_model_dir(path) == model
    with pytest.raises(CliError, match="does not exist"):
        checkpoint_model_dir(tmp_path / "nothing")


def test_hub_is_offline_only_while_loading_a_local_dataset(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with offline_if_local(None):
        assert not huggingface_hub.constants.HF_HUB_OFFLINE
    with offline_if_local(tmp_path):
        assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert not huggingface_hub.constants.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE
    assert "HF_HUB_OFFLINE" not in os.environ


def test_select_episodes_checks_existence_and_keeps_order(image_dataset):
    meta = image_dataset.meta
    assert select_episodes(meta, None) == [0, 1, 2]
    assert select_episodes(meta, [2, 0, 2]) == [2, 0]
    with pytest.raises(CliError, match=r"no episode\(s\) \[5\]; it has 3 episodes \(0..2\)"):
        select_episodes(meta, [0, 5])


# ---------------------------------------------------------------- keypoint configs


def test_keypoint_flags():
    assert parse_keypoint_flag("40:0.5").frame_index == 40
    seconds = parse_keypoint_flag("4.5s:1")
    assert seconds.timestamp == 4.5 and seconds.reward == 1.0
    for bad in ("40", "a:0.5", "4:x", "-3:0.5"):
        with pytest.raises(KeypointConfigError, match="FRAME:REWARD"):
            parse_keypoint_flag(bad)


def test_keypoint_config_reads_the_original_format(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(
        json.dumps(
            {
                "repo_id": "me/data",
                "episodes": {
                    "3": {
                        "keypoints": [
                            {"timestamp": 2.0, "reward": 0.5},
                            {"frame_index": 40, "timestamp": 4.0, "reward": 1},
                        ]
                    }
                },
            }
        )
    )
    repo_id, labels = read_keypoint_config(path, fps=10)
    assert repo_id == "me/data"
    assert [(k.frame(10), k.reward) for k in labels[3]] == [(20, 0.5), (40, 1.0)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "must be a JSON object"),
        ('{"episodes": {}}', "non-empty object"),
        ('{"episodes": {"x": {"keypoints": []}}, "repo_id": "a"}', "episode key 'x'"),
        ('{"episodes": {"1": {"keypoints": [{"frame_index": 2}]}}}', "episode 1: keypoint 0: 'reward'"),
        ('{"episodes": {"1": {"keypoints": [{"reward": 0.5}]}}}', "needs 'frame_index' or 'timestamp'"),
        (
            '{"episodes": {"1": {"keypoints": [{"frame_index": 3, "timestamp": 1.0, "reward": 0.5}]}}}',
            "disagrees",
        ),
        ('{"episodes": {"1": {"keypoints": [{"frame": 3, "reward": 0.5}]}}}', "unknown keys ['frame']"),
        ('{"episode": {}}', "unknown keys ['episode']"),
    ],
)
def test_keypoint_config_errors_name_file_and_entry(tmp_path, content, message):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(KeypointConfigError, match=str(path)) as error:
        read_keypoint_config(path, fps=10)
    assert message in str(error.value)


def test_dense_labels_validate_against_the_dataset():
    keypoints = {1: [parse_keypoint_flag("5:0.5"), parse_keypoint_flag("9:1.0")]}
    dense = dense_labels(keypoints, {0: 4, 1: 12}, 10, 0.0, 1.0, "flags")
    assert dense[1][5] == pytest.approx(0.5) and dense[1][-1] == 1.0 and dense[1][0] == 0.0
    with pytest.raises(KeypointConfigError, match="flags: episode 3 does not exist"):
        dense_labels({3: keypoints[1]}, {0: 4, 1: 12}, 10, 0.0, 1.0, "flags")
    with pytest.raises(KeypointConfigError, match="flags: episode 0: .*past the end"):
        dense_labels({0: keypoints[1]}, {0: 4, 1: 12}, 10, 0.0, 1.0, "flags")
    with pytest.raises(KeypointConfigError, match="outside the value range"):
        dense_labels({1: [parse_keypoint_flag("2:1.5")]}, {1: 12}, 10, 0.0, 1.0, "flags")
    assert sampled_values(np.linspace(0, 1, 21, dtype=np.float32), samples=3) == "0=0.000 10=0.500 20=1.000"


# ---------------------------------------------------------------- video and plots


def test_write_mp4_pads_odd_sizes_and_keeps_every_frame(tmp_path):
    frames = [np.full((33, 47, 3), 10 * i, dtype=np.uint8) for i in range(7)]
    path = tmp_path / "clip.mp4"
    assert write_mp4(path, frames, fps=10) == 7
    video = decoded(path)
    assert len(video) == 7 and video[0].shape == (34, 48, 3)
    assert abs(int(video[6][:33, :47].mean()) - 60) <= 3
    assert path.stat().st_mode & 0o777 == 0o644  # a video is for sharing, not mkstemp's private 0o600


def test_write_mp4_leaves_nothing_behind_on_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "empty.mp4", [], fps=10)
    mixed = [np.zeros((8, 8, 3), np.uint8), np.zeros((10, 8, 3), np.uint8)]
    with pytest.raises(ValueError, match="video frame 1 has size"):
        write_mp4(tmp_path / "mixed.mp4", mixed, fps=10)
    assert list(tmp_path.iterdir()) == []


def test_write_figure_names_its_format_by_suffix_and_keeps_the_old_image_on_failure(tmp_path):
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(2, 1))
    png, pdf = tmp_path / "plots" / "curve.png", tmp_path / "plots" / "curve.pdf"
    write_figure(figure, png)
    write_figure(figure, pdf)
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
    assert png.stat().st_mode & 0o777 == 0o644
    before = png.read_bytes()
    figure.savefig = lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("killed mid-save"))
    with pytest.raises(RuntimeError, match="killed mid-save"):
        write_figure(figure, png)
    plt.close(figure)
    assert png.read_bytes() == before and sorted(p.name for p in png.parent.iterdir()) == [
        "curve.pdf",
        "curve.png",
    ]


def test_image_conversion():
    chw = np.zeros((3, 4, 5), np.float32)
    chw[0] = 1.0
    image = to_uint8_rgb(chw)
    assert image.shape == (4, 5, 3) and image[..., 0].min() == 255 and image[..., 1].max() == 0
    assert pad_to_even(np.zeros((3, 5, 3), np.uint8)).shape == (4, 6, 3)


def test_runs_of_positive_frames():
    assert _runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 2), (4, 4)]
    assert _runs(np.zeros(3, bool)) == []


def test_video_frames_have_one_size_with_and_without_cameras():
    spec = PanelSpec(title="t", threshold_band=(0.1, 0.2), positive=np.array([0, 1, 1, 0], bool))
    curves = [Curve("a", np.array([0.0, 0.5, 0.2, 0.9]))]
    cameras = [[np.zeros((32, 48, 3), np.uint8), np.zeros((3, 16, 16), np.float32)]] * 4
    frames = list(episode_video_frames(cameras, spec, curves))
    assert len(frames) == 4 and {f.shape for f in frames} == {(512, 640, 3)}  # 384 + 256 px of cameras
    bare = list(episode_video_frames([[]] * 4, spec, curves))
    assert {f.shape for f in bare} == {(256, 512, 3)}
    assert not np.array_equal(bare[0], bare[3])  # the curve grows


def test_panel_rejects_curves_of_different_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        CurvePanel(PanelSpec("t"), [Curve("a", np.zeros(3)), Curve("b", np.zeros(4))], 200, 100)


# ---------------------------------------------------------------- advantages and labels


def test_threshold_band_and_dataset_match():
    table = pd.DataFrame(
        {
            "episode_index": [0, 0, 0, 1, 1],
            "task_index": [0, 0, 0, 1, 1],
            "advantage": [-0.5, 0.1, 0.4, 0.2, 0.3],
            "positive": [False, False, True, True, True],
        }
    )
    assert threshold_band(table, 0) == (0.1, 0.4)
    assert threshold_band(table, 1) == (0.2, 0.2)
    check_matches_dataset(table, {0: 3, 1: 2}, Path("adv.parquet"))
    with pytest.raises(ValueError, match="episode 1 has 2 frames there and 5 in the dataset"):
        check_matches_dataset(table, {0: 3, 1: 5}, Path("adv.parquet"))
    with pytest.raises(ValueError, match=r"episodes missing from the file \[2\]"):
        check_matches_dataset(table, {0: 3, 1: 2, 2: 4}, Path("adv.parquet"))


def test_positive_by_phase_shows_where_in_their_episodes_the_positives_lie():
    # Episode 0 (10 frames) is positive in its first half only, episode 1 (5 frames) everywhere,
    # episode 2 (4 frames) nowhere.
    positive = [True] * 5 + [False] * 5 + [True] * 5 + [False] * 4
    table = pd.DataFrame(
        {
            "episode_index": [0] * 10 + [1] * 5 + [2] * 4,
            "frame_index": [*range(10), *range(5), *range(4)],
            "positive": positive,
        }
    )
    summary = positive_by_phase(table, {0: "success", 1: "success", 2: "failure"}, phases=2)
    assert summary.columns.tolist() == ["1/2", "2/2", "all"]
    # Success: phase 1 holds frames 0-4 of episode 0 and 0-2 of episode 1 (all positive); phase 2
    # frames 5-9 of episode 0 (negative) and 3-4 of episode 1 (positive).
    assert summary.loc["success"].tolist() == pytest.approx([1.0, 2 / 7, 10 / 15])
    assert summary.loc["failure"].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(KeyError, match=r"no group for episodes \[2\]"):
        positive_by_phase(table, {0: "success", 1: "success"})
    with pytest.raises(ValueError, match="at least one phase, got 0"):
        positive_by_phase(table, {0: "a", 1: "a", 2: "a"}, phases=0)


def test_policy_labels_follow_the_policy_reward_source(tmp_path):
    from lerobot_policy_rewact.reward_labels import KEYPOINTS_RELATIVE_PATH, KeypointReward, save_keypoints

    save_keypoints(tmp_path / KEYPOINTS_RELATIVE_PATH, {1: [KeypointReward(1.0, frame_index=2)]}, fps=10)
    meta = SimpleNamespace(
        root=tmp_path,
        fps=10,
        episodes={"episode_index": [0, 1], "length": [5, 5], "dataset_from_index": [0, 5]},
    )
    auto = policy_labels(meta, RewACTConfig(pretrained_backbone_weights=None))
    assert auto[1].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0], abs=1e-6)
    progress = policy_labels(meta, RewACTConfig(pretrained_backbone_weights=None, reward_source="progress"))
    assert progress[1][2] == pytest.approx(0.5) and progress[0].tolist() == pytest.approx(auto[0].tolist())

    values = pd.DataFrame(
        {"episode_index": [1, 1, 1, 1, 1], "frame_index": [4, 3, 2, 1, 0], "value": [0.9, 0.8, 0.6, 0.4, 0.1]}
    )
    report = episode_report(values, auto, 1)
    assert report.voc == pytest.approx(1.0) and report.values.tolist() == [0.1, 0.4, 0.6, 0.8, 0.9]
    assert report.mae == pytest.approx(np.mean([0.1, 0.1, 0.4, 0.2, 0.1]))
    single = episode_report(values.iloc[:1].assign(frame_index=0), auto, 1)
    assert single.voc is None and single.to_json()["voc"] is None


# ---------------------------------------------------------------- training options


def test_plugin_options_round_trip_and_validation(tmp_path):
    options = PluginOptions(reward="labels", reward_labels=["a.parquet", "b.parquet"], outcomes=True)
    options.save(tmp_path)
    assert PluginOptions(**PluginOptions.load(tmp_path)) == options
    assert PluginOptions.load(tmp_path / "elsewhere") == {}
    (tmp_path / "rewact_plugins.json").write_text('{"rewards": "dense"}')
    with pytest.raises(ValueError, match="unknown plugin options"):
        PluginOptions.load(tmp_path)
    assert split_list("a, b") == ["a", "b"] and split_list(None) == []


def test_reward_source_rules():
    config = RewACTConfig(pretrained_backbone_weights=None)
    assert resolve_reward(PluginOptions(), config, 1) == "policy"
    assert resolve_reward(PluginOptions(), config, 2) == "dense"
    with pytest.raises(CliError, match="needs a single dataset"):
        resolve_reward(PluginOptions(reward="policy"), config, 2)
    progress = RewACTConfig(pretrained_backbone_weights=None, reward_source="progress")
    with pytest.raises(CliError, match="reward_source=progress ignores them"):
        resolve_reward(PluginOptions(reward="dense"), progress, 1)
