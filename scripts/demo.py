"""The main job on built-in data (`make demo`): PushT data → RewACT reward model → predictions.

1. Generates the built-in PushT dataset with the scripted expert unless it already exists.
2. Trains RewACT (image + environment state + agent position) with stock `lerobot-train` on the
   training episodes, with linear progress labels derived inside the policy.
3. Renders the predicted and labelled progress of the held-out episodes (MP4 + PNG) and prints the
   reward-model metrics (VOC, MAE) over them.

Every step is a command a user could run by hand; they are printed before they run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from rewact_tools.cli import run_command
from rewact_tools.distributed import exit_if_launched
from rewact_tools.lerobot_compat import EVAL_FREQ_FIELD

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REPO_ID = "local/pusht_demo"
# Clean demonstrations: their progress is monotone in time, which linear labels assume. Noisy and
# detouring episodes wander (see benchmarks/ for reward models on mixed data).
MIX = "clean=60"
HELD_OUT = 10


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", type=Path, default=REPO / "demo_output", help="where everything goes")
    parser.add_argument("--steps", type=int, default=600, help="training steps (default: 600)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="dataset and training seed (default: 0)")
    args = parser.parse_args()
    exit_if_launched("demo.py")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    dataset_root = args.output_dir / "pusht"
    train_dir = args.output_dir / "train"
    predictions_dir = args.output_dir / "predictions"

    if not (dataset_root / "meta" / "info.json").is_file():
        shutil.rmtree(dataset_root, ignore_errors=True)
        run_command(
            [
                sys.executable,
                str(REPO / "scripts" / "make_pusht_dataset.py"),
                f"--root={dataset_root}",
                f"--repo-id={REPO_ID}",
                f"--mix={MIX}",
                f"--seed={args.seed}",
            ],
            env,
        )
    num_episodes = json.loads((dataset_root / "meta" / "info.json").read_text())["total_episodes"]
    train_episodes = list(range(num_episodes - HELD_OUT))
    held_out = [str(e) for e in range(num_episodes - HELD_OUT, num_episodes)]

    shutil.rmtree(train_dir, ignore_errors=True)
    run_command(
        [
            str(BIN / "lerobot-train"),
            f"--dataset.repo_id={REPO_ID}",
            f"--dataset.root={dataset_root}",
            f"--dataset.episodes={train_episodes}".replace(" ", ""),
            "--policy.type=rewact",
            "--policy.device=cpu",
            "--policy.push_to_hub=false",
            "--policy.pretrained_backbone_weights=null",
            "--policy.dim_model=128",
            "--policy.n_heads=4",
            "--policy.dim_feedforward=512",
            "--policy.n_encoder_layers=2",
            "--policy.chunk_size=10",
            "--policy.n_action_steps=10",
            "--policy.use_vae=false",
            "--policy.optimizer_lr=3e-4",
            "--policy.optimizer_lr_backbone=3e-4",
            "--policy.reward_loss_weight=1.0",
            "--batch_size=16",
            f"--steps={args.steps}",
            "--num_workers=0",
            f"--save_freq={args.steps}",
            f"--{EVAL_FREQ_FIELD}=-1",
            "--dataset.video_backend=pyav",
            "--log_freq=100",
            "--wandb.enable=false",
            f"--seed={args.seed}",
            f"--output_dir={train_dir}",
            "--job_name=rewact_demo",
        ],
        env,
    )
    checkpoint = train_dir / "checkpoints" / "last" / "pretrained_model"
    dataset_flags = [
        f"--dataset-repo-id={REPO_ID}",
        f"--dataset-root={dataset_root}",
        f"--policy-path={checkpoint}",
    ]
    run_command(
        [
            sys.executable,
            str(REPO / "scripts" / "visualise_reward_predictions.py"),
            *dataset_flags,
            "--episode-id",
            *held_out,
            f"--output-dir={predictions_dir}",
        ],
        env,
    )
    run_command(
        [
            sys.executable,
            str(REPO / "scripts" / "evaluate_reward_model.py"),
            *dataset_flags,
            "--episode-id",
            *held_out,
            f"--output={predictions_dir / 'metrics.json'}",
        ],
        env,
    )
    print(f"\nDone. Held-out predictions (MP4 + PNG per episode) are in {predictions_dir}")
    print(f"Checkpoint: {checkpoint}")


if __name__ == "__main__":
    main()
