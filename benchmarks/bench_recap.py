"""RECAP from experience on PushT: do policies improve from their own rollouts, round after round?
(issue 18, SPEC §7)

Round 0 data (keypoint observations, hand speed 40) is a start where filtering alone cannot be
enough: by default 120 `clean` demonstrations, 60 `detour` ones (successes, slowed by random trips
away) and 120 `giveup` ones, whose first 10-50 steps are the clean expert's good pushes before it
wanders off. Each (arm, training seed) then runs on its own:
  round r   train the arm on the round-0 data plus every episode it collected itself (round 0 from
            scratch for --steps; later rounds fine-tune the previous round's policy for
            --finetune-steps, as pi*0.6 does, or retrain from scratch with --finetune-steps 0; the
            same steps for every arm); evaluate it in gym-pusht; unless it is the last
            round, roll it out for --rollout-episodes episodes (start states shared by every arm of
            the same seed and round), a scripted corrector taking over where the policy stalls
            (`common.pusht_corrections`: the clean expert after --patience steps without progress, for
            --correction-steps steps; those frames are interventions), and add those episodes
Arms (ACT settings as bench_actvantage_vs_act: the fast small ACT, batch 256, cosine lr):
  act_all       LeRobot's ACT on everything collected
  filtered_bc   LeRobot's ACT on the successful episodes and the corrections only: iterated, it is
                self-imitation, the simplest thing a user can do with outcomes and no value model.
                A collected episode counts as successful only if the policy finished it without a
                correction; a corrected episode contributes its corrections
  weighted_bc   LeRobot's ACT on everything, intervention-weighted in Sirius's form (as sampling
                weights): the --pre-takeover-window policy frames before each takeover 0, the
                corrections together as heavy as all other frames, the rest 1
  rabc          RewACT (reward_loss_weight 0) on everything, weighted by LeRobot 0.6's RA-BC over
                the progress of a value model trained on this round's data (LeRobot >= 0.6)
  actvantage    ACTvantage on everything, conditioned on the advantages of a value model trained on
                this round's data, corrections forced positive, with the command line's recipe
                (--positive-fraction, --n-step, --credit, --pre-takeover-negative, --threshold-by,
                --injection, --negative-weight); evaluated at beta 1 and at each --guided-beta,
                against --guidance-reference (null or negative); collects at --collect-beta (1)
  actvantage_pistar  the control: ACTvantage with pi*0.6's recipe (30 % positive, N-step with N =
                1 s, outcomes per episode, one threshold per task)
  actvantage_outcome  ACTvantage labelled by outcome instead of advantage: the frames filtered BC
                trains on positive, every other frame negative, no value model (the command line's
                --negative-weight and --injection); it tells whether the advantages or the
                conditioning cost ACTvantage against filtered BC
  actvantage_or_outcome   actvantage's labels, and filtered BC's frames positive as well
  actvantage_and_outcome  actvantage's labels, positive only on filtered BC's frames
The value model is RewACT on pi*0.6 targets (success: rises to 1, failure: stays low; per takeover
segment with --credit segment), trained for --value-steps on this round's data less held-out
episodes and chosen on validation VOC; its test VOC and AUROC are recorded per round, and so is how
far ACTvantage's (+) and (-) chunks lie apart. Every evaluation uses the same --eval-episodes reset
seeds, so arms and rounds are paired episode by episode. Reported per round and arm, over seeds x
episodes with 95 % hierarchical bootstrap intervals: success rate, mean max coverage, successes per
1000 environment steps and steps to success; paired differences from filtered BC and weighted BC of
the same round, from filtered BC of round 0 (the clean-demonstration policy), and from the arm's
previous round. --merge joins runs (renaming arms) into one table. The results file is rewritten
after every (arm, seed) chain; --resume continues a stopped run in its --output, running only the
chains it lacks (the settings must match).

    python benchmarks/bench_recap.py --workers 2 --output benchmarks/results/recap.json
    python benchmarks/bench_recap.py --quick     # seconds; checks the pipeline only
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lerobot_policy_actvantage.configuration_actvantage import ADVANTAGE_INJECTIONS
from lerobot_policy_rewact import RewACTConfig, RewACTPolicy
from rewact_tools import compute_advantages, load_episode_outcomes, make_pre_post_processors, pistar_returns
from rewact_tools.advantage_display import positive_by_phase
from rewact_tools.advantages import THRESHOLD_GROUPS
from rewact_tools.atomic import write_json
from rewact_tools.metrics import reward_model_metrics
from rewact_tools.takeovers import CREDITS, clean_successes, credited_frames, pre_takeover_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
import closed_loop_stats  # noqa: E402
from bench_actvantage_vs_act import build_arm, policy_settings, quick_max_length, rabc_weighter  # noqa: E402
from common import (  # noqa: E402
    DATA_DIR,
    LR_SCHEDULES,
    Frames,
    RolloutEpisode,
    SpawnPool,
    TrainSettings,
    add_dataset_arguments,
    add_guidance_reference_argument,
    evaluate_guided,
    guidance,
    held_out_split,
    load_frames,
    pusht_corrections,
    pusht_dataset,
    refuse_invalid_guidance,
    roll_out_pusht,
    save_figure,
    train_policy,
)
from harness import (  # noqa: E402
    ResultsFile,
    add_run_arguments,
    finish_run_arguments,
    merge_runs,
    resumed_run,
)

KEYS = ("observation.state", "observation.environment_state")
DEFAULT_MIX = "clean=120,detour=60,giveup=120"
OUTCOME_ARM = "actvantage_outcome"
# Advantage labels combined with filtered BC's choice of frames: positive where either says so (the
# failures' good frames join filtered BC's: `compute_advantages(successes_positive=True)`), or only
# where both do (filtered BC's frames less the ones the advantage ranks low, such as a detour's trips).
OR_ARM, AND_ARM = "actvantage_or_outcome", "actvantage_and_outcome"
COMBINED_ARMS = (OR_ARM, AND_ARM)
ARMS = (
    "act_all",
    "filtered_bc",
    "weighted_bc",
    "rabc",
    "actvantage",
    "actvantage_pistar",
    OUTCOME_ARM,
    *COMBINED_ARMS,
)
REFERENCE_ARM = "filtered_bc"
ADVANTAGE_ARMS = ("actvantage", "actvantage_pistar", OUTCOME_ARM, *COMBINED_ARMS)
VALUE_ARMS = ("rabc", "actvantage", "actvantage_pistar", *COMBINED_ARMS)
PUSHT_FPS = 10


@dataclass(frozen=True)
class AdvantageRecipe:
    """How an ACTvantage arm turns values into its positive labels (`compute_advantages`' options)."""

    positive_fraction: float
    n_steps: int | None
    credit: str
    pre_takeover_window: int
    threshold_by: str
    value_bins: int
    injection: str
    negative_weight: float = 1.0
    """Weight of a negative frame against a positive one's 1 (1: uniform, as pi*0.6)."""
    negative_weight_by: str = "sampling"
    """How it acts: on how often a frame is drawn (`sampling`), or on its loss (`loss`, the
    policy's `negative_weight`, what recap.py and lerobot-train use)."""


def advantage_recipe(args, arm: str) -> AdvantageRecipe:
    """`actvantage` and the combined arms: the command line's settings; `actvantage_pistar`: pi*0.6's
    published recipe (30 % positive, N-step advantages with N = 1 s, outcomes per episode, one
    threshold per task, the indicator on ACT's latent token), the control."""
    if arm == "actvantage_pistar":
        return AdvantageRecipe(0.3, PUSHT_FPS, "episode", 0, "task", args.value_bins, "encoder_token", 1.0)
    return AdvantageRecipe(
        args.positive_fraction,
        args.n_step,
        args.credit,
        args.pre_takeover_window if args.pre_takeover_negative else 0,
        args.threshold_by,
        args.value_bins,
        args.injection,
        args.negative_weight,
        args.negative_weight_by,
    )


DEMONSTRATION_SEED = -1
"""The reset seed a round-0 episode carries in rollout form: it was recorded, not rolled out."""


# ------------------------------------------------------------------------------------------------
# Experience: round-0 episodes plus an arm's own rollouts, as in-memory frames


def dataset_episodes(dataset, outcomes: dict[int, bool | None]) -> list[RolloutEpisode]:
    """The round-0 dataset's episodes in rollout form (no interventions: demonstrations are unlabelled)."""
    frames = load_frames(dataset, KEYS)
    episodes = []
    for episode in sorted(outcomes):
        rows = frames.rows_of([episode])
        episodes.append(
            RolloutEpisode(
                seed=DEMONSTRATION_SEED,
                state=list(frames.observations["observation.state"][rows].numpy()),
                environment_state=list(frames.observations["observation.environment_state"][rows].numpy()),
                action=list(frames.action[rows].numpy()),
                intervention=[False] * len(rows),
                success=bool(outcomes[episode]),
            )
        )
    return episodes


class Experience:
    """Every episode an arm trains on: frames in memory, their frame table, outcomes and corrections.
    `pre_takeover_window` policy frames before each takeover are the stall that needed rescuing."""

    def __init__(self, episodes: list[RolloutEpisode], pre_takeover_window: int):
        lengths = torch.tensor([episode.steps for episode in episodes])
        ends = torch.cumsum(lengths, 0)
        self.frames = Frames(
            observations={
                "observation.state": _stack(episodes, "state"),
                "observation.environment_state": _stack(episodes, "environment_state"),
            },
            action=_stack(episodes, "action"),
            index=torch.arange(int(ends[-1])),
            episode_index=torch.arange(len(episodes)).repeat_interleave(lengths),
            episode_end=ends.repeat_interleave(lengths),
            image_keys=frozenset(),
        )
        self.table = pd.DataFrame(
            {
                "index": self.frames.index.numpy(),
                "episode_index": self.frames.episode_index.numpy(),
                "frame_index": np.concatenate([np.arange(length) for length in lengths.tolist()]),
                "task_index": 0,
            }
        )
        self.outcomes = {i: episode.success for i, episode in enumerate(episodes)}
        intervention = np.concatenate([np.asarray(episode.intervention, dtype=bool) for episode in episodes])
        self.intervention_index = self.frames.index.numpy()[intervention]
        self.corrected_episodes = {i for i, episode in enumerate(episodes) if any(episode.intervention)}
        self.demonstrations = {i for i, episode in enumerate(episodes) if episode.seed == DEMONSTRATION_SEED}
        self.frame_kinds = np.concatenate(
            [_frame_kinds(episode, i in self.corrected_episodes) for i, episode in enumerate(episodes)]
        )
        self.pre_takeover = pre_takeover_index(self.table, self.intervention_index, pre_takeover_window)
        self.frame_kinds[self.pre_takeover] = "pre_takeover"  # dataset index = row here

    def filtered_rows(self) -> torch.Tensor:
        """Filtered BC's training set: rows of the episodes the policy (or demonstrator) finished
        successfully on its own, and of every correction. A corrected episode's own frames are left
        out even when it succeeded: they are the stalls the corrector rescued."""
        succeeded = sorted(clean_successes(self.table, self.outcomes, self.intervention_index))
        rows = self.frames.rows_of(succeeded) if succeeded else torch.zeros(0, dtype=torch.long)
        return torch.unique(torch.cat([rows, torch.from_numpy(self.intervention_index)]))

    def filtered_mask(self) -> np.ndarray:
        """Per row, whether filtered BC trains on it (`filtered_rows`)."""
        mask = np.zeros(len(self.frames), dtype=bool)
        mask[self.filtered_rows().numpy()] = True
        return mask

    def sirius_weights(self) -> torch.Tensor:
        """Intervention-weighted BC in Sirius's form, per row: 0 in the pre-takeover window, the
        corrections together as heavy as every other frame together (half of each batch), 1 else."""
        weights = np.ones(len(self.frames))
        weights[self.pre_takeover] = 0.0
        weights[self.intervention_index] = 0.0
        if len(self.intervention_index):
            weights[self.intervention_index] = weights.sum() / len(self.intervention_index)
        return torch.from_numpy(weights)


FRAME_KINDS = ("demonstration", "rollout", "pre_takeover", "corrected_rollout", "correction")


def _frame_kinds(episode: RolloutEpisode, corrected: bool) -> np.ndarray:
    """Who chose each frame's action: a demonstrator (round-0 episodes), the policy in a
    rollout without corrections, the policy in a corrected rollout, or the corrector."""
    if episode.seed == DEMONSTRATION_SEED:
        return np.full(episode.steps, FRAME_KINDS[0], dtype=object)
    policy_kind = FRAME_KINDS[3] if corrected else FRAME_KINDS[1]
    return np.where(np.asarray(episode.intervention, dtype=bool), FRAME_KINDS[4], policy_kind).astype(object)


def _stack(episodes: list[RolloutEpisode], field: str) -> torch.Tensor:
    return torch.from_numpy(
        np.concatenate([np.stack(getattr(e, field)) for e in episodes]).astype(np.float32)
    )


# ------------------------------------------------------------------------------------------------
# One round of one arm


def value_targets(args, experience: Experience, credit: str) -> pd.DataFrame:
    """pi*0.6 value targets (`index`, `value_target`) of every frame, credited per episode or per
    takeover segment (`rewact_tools.takeovers`), as the advantages that use them are."""
    table, outcomes = credited_frames(
        experience.table, experience.outcomes, credit, experience.intervention_index
    )
    return pistar_returns(table, outcomes, max_length=quick_max_length(args))[["index", "value_target"]]


def frame_values(policy, preprocessor, frames: Frames, rows: torch.Tensor) -> np.ndarray:
    """The value model's value of each of `rows`, in batches."""
    policy.eval()
    chunk_size = policy.config.chunk_size
    with torch.no_grad():
        values = [
            policy.predict_value(preprocessor(frames.batch(part, chunk_size))) for part in rows.split(1024)
        ]
    return torch.cat(values).numpy()


def value_model_values(
    args, dataset, experience: Experience, credit: str, seed: int, desc: str
) -> tuple[pd.DataFrame, dict]:
    """RewACT on this experience's pi*0.6 targets, chosen on validation episodes; every frame's value
    and the report: the chosen step, its validation and test metrics (VOC, terminal AUROC, ...).

    As in bench_actvantage_vs_act: every --hold-out-every-th success and failure is a test episode,
    of the rest every --hold-out-every-th a validation one; checkpoints every --value-eval-every
    steps, the best validation VOC wins."""
    targets = value_targets(args, experience, credit)
    train_and_validation, test = held_out_split(experience.outcomes, args.hold_out_every)
    train, validation = held_out_split(
        {e: experience.outcomes[e] for e in train_and_validation}, args.hold_out_every
    )
    config = RewACTConfig(
        **{**policy_settings(args, dataset), "dropout": args.value_dropout},
        reward_source="dataset",
        optimizer_lr=args.value_lr,
    )
    preprocessor, _ = make_pre_post_processors(config, dataset.meta.stats)
    torch.manual_seed(seed)
    policy = RewACTPolicy(config)
    frames = experience.frames
    labels = frames.extra_by_index(targets["index"].to_numpy(), targets["value_target"].to_numpy()).float()

    def score(episodes: list[int]) -> dict:
        rows = frames.rows_of(episodes)
        table = experience.table.iloc[rows.numpy()].assign(
            value=frame_values(policy, preprocessor, frames, rows), label=labels[rows].numpy()
        )
        return reward_model_metrics(table, {e: experience.outcomes[e] for e in episodes})

    best: dict = {}

    def checkpoint(step: int, seconds: float) -> None:
        metrics = score(validation)
        voc = -np.inf if metrics["voc_mean"] is None else metrics["voc_mean"]
        if not best or voc > best["voc"]:
            best.update(voc=voc, step=step, metrics=metrics, state=copy.deepcopy(policy.state_dict()))

    train_policy(
        policy,
        preprocessor,
        frames,
        frames.rows_of(train),
        TrainSettings(steps=args.value_steps, batch_size=args.batch_size, lr=args.value_lr, seed=seed),
        extras={"reward": labels},
        checkpoints=range(args.value_eval_every, args.value_steps + 1, args.value_eval_every),
        on_checkpoint=checkpoint,
        desc=desc,
    )
    policy.load_state_dict(best["state"])
    report = {
        "chosen_step": best["step"],
        "validation": best["metrics"],
        "test": score(test),
        "episodes": {"train": len(train), "validation": len(validation), "test": len(test)},
    }
    values = frame_values(policy, preprocessor, frames, torch.arange(len(frames)))
    return experience.table[["index", "episode_index", "frame_index"]].assign(value=values), report


def train_arm(
    args,
    arm: str,
    seed: int,
    round_: int,
    dataset,
    experience: Experience,
    scratch: Path,
    start: tuple | None,
) -> tuple:
    """The arm's policy and processors trained on `experience`, and what it trained on: from scratch,
    or `start`'s (policy, preprocessor, postprocessor) fine-tuned when --finetune-steps > 0."""
    desc = _description(arm, seed, round_)
    finetune = start is not None and args.finetune_steps > 0
    recipe = advantage_recipe(args, arm) if arm in ADVANTAGE_ARMS else None
    if finetune:
        policy, preprocessor, postprocessor = copy.deepcopy(start)
    else:
        settings = policy_settings(args, dataset)
        if recipe is not None:
            settings["advantage_injection"] = recipe.injection
            settings["guidance_reference"] = args.guidance_reference
            # Drawn less often (sampling), a negative frame's loss keeps the weight 1.
            loss_weighted = recipe.negative_weight_by == "loss"
            settings["negative_weight"] = recipe.negative_weight if loss_weighted else 1.0
        policy, preprocessor, postprocessor = build_arm(args, arm, seed, dataset, settings)
    frames = experience.frames
    rows = experience.filtered_rows() if arm == REFERENCE_ARM else torch.arange(len(frames))
    extras, weighter, row_weights = {}, None, None
    info: dict = {"train_frames": len(rows)}
    if arm == "weighted_bc":
        row_weights = experience.sirius_weights()
    advantages = None
    if arm == OUTCOME_ARM:  # filtered BC's frames positive, every other frame negative
        advantages = experience.table.assign(positive=experience.filtered_mask())
    if arm in VALUE_ARMS:
        credit = "episode" if recipe is None else recipe.credit
        values, info["value_model"] = value_model_values(
            args, dataset, experience, credit, seed, f"{desc} value model"
        )
        if arm == "rabc":
            extras = {"reward": torch.zeros(len(frames))}  # RA-BC reads progress; no value loss
            weighter = rabc_weighter(values, policy, scratch)
        else:
            advantages = compute_advantages(
                experience.table,
                values,
                experience.outcomes,
                positive_fraction=recipe.positive_fraction,
                n_steps=recipe.n_steps,
                max_length=quick_max_length(args),
                human_index=experience.intervention_index,
                credit=recipe.credit,
                pre_takeover_window=recipe.pre_takeover_window,
                threshold_by=recipe.threshold_by,
                value_bins=recipe.value_bins,
                successes_positive=arm == OR_ARM,
            )
            if arm == AND_ARM:
                kept = experience.filtered_mask()[advantages["index"].to_numpy()]
                advantages["positive"] = advantages["positive"].to_numpy() & kept
    if advantages is not None:
        extras = {
            "advantage": frames.extra_by_index(
                advantages["index"].to_numpy(), advantages["positive"].to_numpy()
            ).bool()
        }
        if recipe.negative_weight_by == "sampling" and recipe.negative_weight != 1.0:
            row_weights = torch.where(extras["advantage"], 1.0, recipe.negative_weight).double()
        info["recipe"] = asdict(recipe)
        info |= positive_fractions(experience, advantages, extras["advantage"])
    settings = TrainSettings(
        steps=args.finetune_steps if finetune else args.steps,
        batch_size=args.batch_size,
        lr=args.finetune_lr if finetune else args.lr,
        seed=seed * 1000 + round_,
        lr_schedule=args.lr_schedule,
    )
    info["fine_tuned"] = finetune
    info |= train_policy(
        policy,
        preprocessor,
        frames,
        rows,
        settings,
        extras=extras,
        desc=desc,
        sample_weighter=weighter,
        row_weights=row_weights,
    )
    if recipe is not None:
        info["indicator_effect"] = indicator_effect(policy, preprocessor, frames, extras["advantage"], seed)
    return policy, preprocessor, postprocessor, info


INDICATOR_SAMPLE = 1024


def indicator_effect(policy, preprocessor, frames: Frames, positive: torch.Tensor, seed: int) -> dict:
    """How much the indicator changes the trained ACTvantage, on INDICATOR_SAMPLE of its training
    frames: mean |a(+) - a(-)| beside the actions' own spread (mean absolute deviation from their
    mean), in normalised action units, and the L1 of each condition on the positive and on the
    negative frames. An indicator that matters moves the chunk by a good part of the spread, and
    each condition fits its own frames best."""
    rows = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))[:INDICATOR_SAMPLE]
    batch = preprocessor(frames.batch(rows, policy.config.chunk_size))
    chunks = policy.predict_conditioned_chunks(batch, ("positive", "negative"))
    valid = ~batch["action_is_pad"].bool()
    target = batch["action"]
    labels = positive[rows].bool()

    def l1(condition: str, frames_of: torch.Tensor) -> float | None:
        mask = valid & frames_of[:, None]
        errors = (chunks[condition] - target).abs().mean(-1)
        return round(float(errors[mask].mean()), 4) if mask.any() else None

    return {
        "frames": len(rows),
        "plus_minus_gap": round(
            float((chunks["positive"] - chunks["negative"]).abs().mean(-1)[valid].mean()), 4
        ),
        "action_spread": round(float((target - target[valid].mean(0)).abs().mean(-1)[valid].mean()), 4),
        "l1": {
            f"{condition}_on_{name}": l1(condition, frames_of)
            for condition in ("positive", "negative")
            for name, frames_of in (("positive", labels), ("negative", ~labels))
        },
    }


def positive_fractions(experience: Experience, advantages: pd.DataFrame, positive: torch.Tensor) -> dict:
    """Where "positive" lies: over all frames, by frame kind (the policy's own stalls in rescued
    episodes count as parts of a success under per-episode credit, where filtered BC drops them),
    by fifth of the demonstrations' successes (a threshold can leave their finish negative), and
    against filtered BC's frames (how much the (+) condition asks beyond what filtered BC keeps)."""
    by_kind = pd.Series(positive.numpy(), index=experience.frame_kinds)
    kept = torch.from_numpy(experience.filtered_mask())  # dataset index = row here
    demonstrations = {
        episode: "successful demonstration"
        for episode in experience.demonstrations
        if experience.outcomes[episode]
    }
    phases = positive_by_phase(
        advantages[advantages["episode_index"].isin(demonstrations)], demonstrations
    ).round(4)
    return {
        "positive_fraction": round(float(positive.float().mean()), 4),
        "positive_fraction_by_kind": {
            kind: round(float(group.mean()), 4) for kind, group in by_kind.groupby(level=0)
        },
        "positive_fraction_by_phase": phases.iloc[0].to_dict() if len(phases) else {},
        "frames_by_kind": {kind: len(group) for kind, group in by_kind.groupby(level=0)},
        "filtered_bc_frames": int(kept.sum()),
        "filtered_bc_frames_positive": round(float(positive[kept].float().mean()), 4) if kept.any() else None,
        "positives_beyond_filtered_bc": int((positive & ~kept).sum()),
    }


def run_chain(args, arm: str, seed: int, dataset, base: list[RolloutEpisode], scratch: Path) -> list[dict]:
    """Every round of one (arm, training seed): train, evaluate, collect; returns one dict per round."""
    collected: list[RolloutEpisode] = []
    rounds = []
    start = None
    for round_ in range(args.rounds + 1):
        experience = Experience(base + collected, args.pre_takeover_window)
        desc = _description(arm, seed, round_)
        policy, preprocessor, postprocessor, info = train_arm(
            args, arm, seed, round_, dataset, experience, scratch, start
        )
        if round_ == 0 or args.finetune_from == "previous":
            start = (policy, preprocessor, postprocessor)
        evaluations = {}
        for beta in [1.0, *args.guided_beta] if arm in ADVANTAGE_ARMS else [None]:
            evaluations[_label(arm, beta)] = evaluate_guided(
                args, policy, preprocessor, postprocessor, beta, f"{desc} eval"
            )
        record = {
            "round": round_,
            "episodes": len(base) + len(collected),
            "frames": len(experience.frames),
            "intervention_frames": len(experience.intervention_index),
            **info,
            "eval": evaluations,
        }
        if round_ < args.rounds:
            collect_beta = args.collect_beta if arm in ADVANTAGE_ARMS else None
            with guidance(policy, collect_beta):
                rollouts = roll_out_pusht(
                    policy,
                    preprocessor,
                    postprocessor,
                    collection_seeds(args, seed, round_),
                    env_batch=args.env_batch,
                    max_steps=args.eval_max_steps,
                    desc=f"{desc} collect",
                    corrections=args.corrections,
                )
            collected += rollouts
            record["collected"] = {
                "guidance_scale": collect_beta,
                "episodes": len(rollouts),
                "successes": sum(episode.success for episode in rollouts),
                "own_successes": sum(
                    episode.success and not any(episode.intervention) for episode in rollouts
                ),
                "corrected_episodes": sum(any(episode.intervention) for episode in rollouts),
                "intervention_frames": sum(sum(episode.intervention) for episode in rollouts),
                "env_steps": sum(episode.steps for episode in rollouts),
            }
        print(f"  {desc}: {_round_line(record)}", flush=True)
        rounds.append(record)
    return rounds


def collection_seeds(args, seed: int, round_: int) -> list[int]:
    """Reset seeds of one round's collection: shared by every arm of a seed, apart from the
    evaluation's (which use `eval_seed * 100_000 + i`)."""
    first = 10_000_000 + seed * 100_000 + round_ * 1_000
    return list(range(first, first + args.rollout_episodes))


def _description(arm: str, seed: int, round_: int) -> str:
    return f"{arm} seed {seed} round {round_}"


def _label(arm: str, beta: float | None) -> str:
    return arm if beta is None or beta == 1.0 else f"{arm}_beta{beta:g}"


def _round_line(record: dict) -> str:
    evaluation = ", ".join(
        f"{label} success {result['success_rate']:.2f} coverage {result['mean_max_coverage']:.3f}"
        for label, result in record["eval"].items()
    )
    collected = record.get("collected")
    more = (
        ""
        if collected is None
        else f"; collected {collected['successes']}/{collected['episodes']} successes, "
        f"{collected['own_successes']} without a correction"
    )
    by_kind = record.get("positive_fraction_by_kind")
    positives = (
        "" if by_kind is None else "; positive " + ", ".join(f"{k} {v:.2f}" for k, v in by_kind.items())
    )
    by_phase = record.get("positive_fraction_by_phase")
    if by_phase:
        positives += (
            " (successful demonstrations by fifth "
            + " ".join(f"{v:.2f}" for k, v in by_phase.items() if k != "all")
            + ")"
        )
    effect = record.get("indicator_effect")
    if effect is not None:
        positives += (
            f"; |a(+) - a(-)| {effect['plus_minus_gap']:.3f} of spread {effect['action_spread']:.3f}, "
            f"L1 (+)/(-) on positive frames {effect['l1']['positive_on_positive']}/"
            f"{effect['l1']['negative_on_positive']}"
        )
    value_model = record.get("value_model")
    value = (
        ""
        if value_model is None
        else f"; value model step {value_model['chosen_step']}: test VOC {value_model['test']['voc_mean']}, "
        f"AUROC {value_model['test']['terminal_auroc']}"
    )
    return evaluation + more + positives + value


# ------------------------------------------------------------------------------------------------
# Jobs: every (arm, seed) chain in a pool of worker processes

_worker: dict = {}


def load_data(args, workers: int = 1) -> tuple:
    """The round-0 dataset (generated by `workers` processes on first use) and its episodes."""
    dataset = pusht_dataset(
        args.mix, args.seed, args.max_steps, args.data_dir, args.hand_speed, with_image=False, workers=workers
    )
    return dataset, dataset_episodes(dataset, load_episode_outcomes(dataset))


def _start_worker(args, directory: Path) -> None:
    torch.set_num_threads(args.threads)
    dataset, base = load_data(args)
    _worker.update(args=args, dataset=dataset, base=base, directory=directory)


def _chain_job(arm: str, seed: int) -> list[dict]:
    scratch = _worker["directory"] / f"{arm}_seed{seed}"
    scratch.mkdir()
    return run_chain(_worker["args"], arm, seed, _worker["dataset"], _worker["base"], scratch)


def run_jobs(args, on_chain, done: set[tuple[str, int]]) -> None:
    """Every (arm, seed) chain not in `done` in `args.workers` spawned processes; `on_chain(arm, seed,
    rounds)` receives each as it finishes. A failed chain stops the run."""
    with SpawnPool(args.workers, _start_worker, (args,)) as pool:
        for seed in args.seeds:
            for arm in args.arms:
                if (arm, seed) not in done:
                    pool.submit((arm, seed), _chain_job, arm, seed)
        while pool.pending:
            key, rounds = pool.next_result()
            on_chain(*key, rounds)


# ------------------------------------------------------------------------------------------------
# Summary, plot, table


def evaluations_by_seed(per_seed: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """`{seed: {"<label>@<round>": evaluation}}` over every arm, variant and round."""
    return {
        seed: {
            f"{label}@{record['round']}": evaluation
            for rounds in arms.values()
            for record in rounds
            for label, evaluation in record["eval"].items()
        }
        for seed, arms in per_seed.items()
    }


def compare(flat: dict[str, dict], label: str, reference: str) -> dict:
    """`label` against `reference` (both `<label>@<round>`), paired by seed and episode."""
    seeds = sorted(flat)
    return closed_loop_stats.paired_differences(
        [flat[seed][label] for seed in seeds], [flat[seed][reference] for seed in seeds]
    )


def summarise(per_seed: dict[str, dict], rounds: int) -> dict:
    """Per round, every arm's statistics and its paired difference from filtered BC of that round;
    each arm's difference from filtered BC of round 0 and from its own previous round. Only what was
    evaluated on every seed is compared (merged runs may add a guided variant on some seeds); the
    rest is listed under `not_on_every_seed`."""
    flat = evaluations_by_seed(per_seed)
    by_seed = [{key.rsplit("@", 1)[0] for key in evaluations} for evaluations in flat.values()]
    labels = sorted(set.intersection(*by_seed))
    summary: dict = {
        "rounds": {},
        "vs_round0_filtered_bc": {},
        "vs_previous_round": {},
        "vs_weighted_bc": {},
        "not_on_every_seed": sorted(set.union(*by_seed) - set(labels)),
    }
    for round_ in range(rounds + 1):
        keys = [f"{label}@{round_}" for label in labels]
        in_round = {
            seed: {key.rsplit("@", 1)[0]: evaluations[key] for key in keys}
            for seed, evaluations in flat.items()
        }
        reference = REFERENCE_ARM if REFERENCE_ARM in labels else None
        summary["rounds"][str(round_)] = closed_loop_stats.summarise(in_round, reference)
    for label in labels:
        if REFERENCE_ARM in labels and not (label == REFERENCE_ARM and rounds == 0):
            summary["vs_round0_filtered_bc"][label] = {
                str(round_): compare(flat, f"{label}@{round_}", f"{REFERENCE_ARM}@0")
                for round_ in range(rounds + 1)
                if (label, round_) != (REFERENCE_ARM, 0)
            }
        summary["vs_previous_round"][label] = {
            str(round_): compare(flat, f"{label}@{round_}", f"{label}@{round_ - 1}")
            for round_ in range(1, rounds + 1)
        }
        if "weighted_bc" in labels and label != "weighted_bc":
            summary["vs_weighted_bc"][label] = {
                str(round_): compare(flat, f"{label}@{round_}", f"weighted_bc@{round_}")
                for round_ in range(rounds + 1)
            }
    return summary


PLOTTED = ("success_rate", "mean_max_coverage", "successes_per_1000_steps")


def plot_results(results: dict, path: Path) -> None:
    """Per metric, each arm's mean over seeds x episodes by round, with its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = results["summary"]["rounds"]
    labels = list(rounds["0"])
    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(5.2 * len(PLOTTED), 4.4))
    for axis, metric in zip(axes, PLOTTED, strict=True):
        for colour, label in enumerate(labels):
            x = np.arange(len(rounds)) + (colour - len(labels) / 2) * 0.04
            means = np.array([rounds[r][label][metric]["mean"] for r in rounds])
            intervals = np.array([rounds[r][label][metric]["ci95"] for r in rounds])
            axis.errorbar(
                x,
                means,
                yerr=[means - intervals[:, 0], intervals[:, 1] - means],
                marker="o",
                capsize=3,
                color=f"C{colour}",
                label=label,
            )
        axis.set_xticks(range(len(rounds)), [f"round {r}" for r in rounds])
        axis.set_ylabel(f"{metric.replace('_', ' ')} (95 % interval)")
        axis.legend(fontsize=7)
    figure.suptitle(
        f"RECAP rounds on PushT ({results['dataset']['mix']}): {len(results['seeds'])} seeds x "
        f"{results['eval']['episodes_per_seed']} episodes, {results['steps']} steps in round 0, "
        f"{results['finetune_steps'] or results['steps']} in each later round"
    )
    save_figure(figure, path)


def print_table(results: dict) -> None:
    print(
        f"threads={results['threads']} workers={results['workers']} seeds={results['seeds']} "
        f"steps={results['steps']} finetune_steps={results['finetune_steps']} rounds={results['rounds']} eval episodes/seed="
        f"{results['eval']['episodes_per_seed']} mix={results['dataset']['mix']} "
        f"wall={results['wall_seconds']} s"
    )
    if results["summary"].get("not_on_every_seed"):
        print(f"not on every seed, so left out: {', '.join(results['summary']['not_on_every_seed'])}")
    for round_, summary in results["summary"]["rounds"].items():
        print(f"round {round_} (differences: vs {REFERENCE_ARM} of this round)")
        closed_loop_stats.print_summary(summary, REFERENCE_ARM)
    for title in ("vs_weighted_bc", "vs_round0_filtered_bc", "vs_previous_round"):
        if not results["summary"].get(title):
            continue
        print(title)
        for label, by_round in results["summary"][title].items():
            for round_, metrics in by_round.items():
                cells = "  ".join(
                    f"{metric} {closed_loop_stats.format_difference(difference)}"
                    for metric, difference in metrics.items()
                    if metric in ("success_rate", "successes_per_1000_steps")
                )
                print(f"  {label:<18} round {round_}: {cells}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser, ARMS, resume=True)
    parser.add_argument("--seed", type=int, default=0, help="round-0 dataset seed")
    add_dataset_arguments(parser, default_mix=DEFAULT_MIX)
    parser.add_argument("--rounds", type=int, default=None, help="rounds after round 0 (default 2)")
    parser.add_argument(
        "--steps", type=int, default=None, help="round 0's policy training steps (default 6000)"
    )
    parser.add_argument(
        "--finetune-steps",
        type=int,
        default=None,
        help="steps fine-tuning the previous round's policy in later rounds; 0 retrains from scratch "
        "for --steps (default 2000)",
    )
    parser.add_argument("--finetune-lr", type=float, default=3e-4, help="peak lr of the fine-tuning rounds")
    parser.add_argument(
        "--value-steps", type=int, default=None, help="value-model steps per round (default 3000)"
    )
    parser.add_argument(
        "--value-eval-every", type=int, default=None, help="value-model validation period (default 500)"
    )
    parser.add_argument(
        "--hold-out-every",
        type=int,
        default=None,
        help="value-model test and validation: every N-th episode (10)",
    )
    parser.add_argument("--value-lr", type=float, default=4e-4)
    parser.add_argument("--value-dropout", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="cosine")
    parser.add_argument("--positive-fraction", type=float, default=0.3, help="actvantage's (default 0.3)")
    parser.add_argument(
        "--n-step",
        type=int,
        default=None,
        help="actvantage's advantage horizon in frames (default: Monte Carlo)",
    )
    parser.add_argument(
        "--credit", choices=CREDITS, default="episode", help="actvantage's outcome credit (default episode)"
    )
    parser.add_argument(
        "--pre-takeover-window",
        type=int,
        default=None,
        help="policy frames before a takeover that are its stall: weighted BC's zero-weight window, "
        "a frame kind of the report and, with --pre-takeover-negative, forced negative (default --patience)",
    )
    parser.add_argument(
        "--pre-takeover-negative",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="actvantage: force the pre-takeover window negative",
    )
    parser.add_argument(
        "--threshold-by", choices=THRESHOLD_GROUPS, default="task", help="actvantage's threshold groups"
    )
    parser.add_argument("--value-bins", type=int, default=10, help="with --threshold-by value_bin")
    parser.add_argument(
        "--injection",
        choices=ADVANTAGE_INJECTIONS,
        default="encoder_token",
        help="where actvantage's indicator enters ACT (default encoder_token)",
    )
    parser.add_argument(
        "--negative-weight",
        type=float,
        default=1.0,
        help="actvantage: weight of negative frames (positives 1; default 1, uniform as pi*0.6): "
        "below 1, more of a fixed step budget goes to what 'positive' asks for",
    )
    parser.add_argument(
        "--negative-weight-by",
        choices=("sampling", "loss"),
        default="sampling",
        help="--negative-weight scales how often a negative frame is drawn (sampling, the default) or its "
        "loss (ACTvantage's negative_weight, as recap.py trains)",
    )
    parser.add_argument(
        "--finetune-from",
        choices=("previous", "round0"),
        default="previous",
        help="later rounds fine-tune the previous round's policy or round 0's (pi*0.6)",
    )
    parser.add_argument(
        "--guided-beta",
        default="1.5",
        help="ACTvantage's guided evaluations, comma-separated guidance scales besides 1 (which also "
        "collects; default 1.5); 0 skips them",
    )
    add_guidance_reference_argument(parser)
    parser.add_argument(
        "--collect-beta",
        type=float,
        default=1.0,
        help="ACTvantage's guidance scale while it collects its rollouts, against --guidance-reference "
        "(default 1: the positive condition alone); what the next round learns from",
    )
    parser.add_argument("--rollout-episodes", type=int, default=None, help="collected per round (default 50)")
    parser.add_argument(
        "--corrections", action=argparse.BooleanOptionalAction, default=True, help="scripted corrections"
    )
    parser.add_argument("--patience", type=int, default=25, help="steps without progress before a correction")
    parser.add_argument("--correction-steps", type=int, default=30, help="steps the corrector drives")
    parser.add_argument(
        "--eval-episodes", type=int, default=None, help="per arm, seed and round (default 50)"
    )
    parser.add_argument("--eval-seed", type=int, default=7)
    parser.add_argument(
        "--eval-max-steps", type=int, default=None, help="step cap of evaluation and collection (300)"
    )
    parser.add_argument("--env-batch", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    args.guided_beta = [float(beta) for beta in args.guided_beta.split(",") if float(beta) not in (0.0, 1.0)]
    finish_run_arguments(
        parser,
        args,
        ARMS,
        {
            "mix": ("clean=4,giveup=4", DEFAULT_MIX),
            "max_steps": (160, 300),
            "rounds": (1, 2),
            "steps": (4, 6000),
            "finetune_steps": (2, 2000),
            "value_steps": (4, 3000),
            "value_eval_every": (2, 500),
            "hold_out_every": (2, 10),
            "rollout_episodes": (2, 50),
            "eval_episodes": (2, 50),
            "eval_max_steps": (40, 300),
        },
    )
    if args.quick:
        args.batch_size = min(args.batch_size, 8)
        args.env_batch = min(args.env_batch, 2)
        args.patience = min(args.patience, 3)
        args.correction_steps = min(args.correction_steps, 5)
    if args.pre_takeover_window is None:
        args.pre_takeover_window = args.patience
    if not 0.0 < args.negative_weight <= 1.0:
        parser.error(f"--negative-weight must lie in (0, 1], got {args.negative_weight}")
    refuse_invalid_guidance(
        parser,
        "--collect-beta / --guided-beta",
        [args.collect_beta, *args.guided_beta],
        args.guidance_reference,
    )
    if args.rounds < 0 or args.finetune_steps < 0:
        parser.error("--rounds and --finetune-steps must be at least 0")
    args.corrections = pusht_corrections(args.patience, args.correction_steps) if args.corrections else None
    return args


MERGE_SHARED = ("dataset", "eval", "rounds", "steps", "finetune_steps", "rollout_episodes", "corrections")


def merge_results(sources: list[str], seeds: list[int] | None, output: Path) -> dict:
    """Runs joined into one results file (`harness.merge_runs`), with the summary and plot.
    `PATH:arm=label,...` renames a run's arms (and their guided variants) first, so runs of one arm
    with other settings (each round's record keeps its recipe) sit side by side. The runs must share
    the data, evaluation and schedule (`MERGE_SHARED`)."""
    runs, per_seed = merge_runs(sources, MERGE_SHARED, seeds, _relabel_rounds, _with_stall_signal)
    merged = {
        **runs[0],
        "per_seed": per_seed,
        "seeds": sorted(int(seed) for seed in per_seed),
        "arms": sorted(next(iter(per_seed.values()))),
        "merged_from": [str(path) for path in sources],
        "wall_seconds": sum(run.get("wall_seconds", 0) for run in runs),
        "summary": summarise(per_seed, runs[0]["rounds"]),
    }
    write_json(output, merged)
    plot_results(merged, output.with_suffix(".png"))
    return merged


def _with_stall_signal(run: dict) -> dict:
    """Runs recorded before the corrections' stall signal was: their corrector watched the env's
    coverage too (`common.pusht_corrections`)."""
    if run.get("corrections") is not None and "stall_signal" not in run["corrections"]:
        run["corrections"] = {**run["corrections"], "stall_signal": "env"}
    return run


def _relabel_rounds(rounds: list[dict], arm: str, label: str) -> list[dict]:
    """A renamed arm's rounds, its evaluations (the arm and its guided variants) under `label`."""
    return [
        {**record, "eval": {label + name[len(arm) :]: e for name, e in record["eval"].items()}}
        for record in rounds
    ]


def main() -> None:
    args = parse_args()
    if args.merge:
        print_table(merge_results(args.merge, args.merge_seeds, args.output))
        return
    torch.set_num_threads(args.threads)
    dataset, base = load_data(args, workers=args.workers)
    results = {
        "benchmark": "recap",
        "date": date.today().isoformat(),
        "quick": args.quick,
        "threads": args.threads,
        "workers": args.workers,
        "dataset": {
            "mix": args.mix,
            "seed": args.seed,
            "max_steps": args.max_steps,
            "episodes": len(base),
            "frames": sum(episode.steps for episode in base),
            "success_rate": float(np.mean([episode.success for episode in base])),
        },
        "model": {k: v for k, v in policy_settings(args, dataset).items() if "features" not in k},
        "arms": args.arms,
        "rounds": args.rounds,
        "steps": args.steps,
        "finetune_steps": args.finetune_steps,
        "finetune_lr": args.finetune_lr,
        "value_steps": args.value_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "positive_fraction": args.positive_fraction,
        "actvantage_recipe": asdict(advantage_recipe(args, "actvantage")),
        "value_model": {
            "steps": args.value_steps,
            "eval_every": args.value_eval_every,
            "hold_out_every": args.hold_out_every,
        },
        "pre_takeover_window": args.pre_takeover_window,
        "finetune_from": args.finetune_from,
        "guided_betas": args.guided_beta,
        "guidance_reference": args.guidance_reference,
        "collect_beta": args.collect_beta,
        "rollout_episodes": args.rollout_episodes,
        "corrections": None if args.corrections is None else args.corrections.as_dict(),
        "eval": {
            "episodes_per_seed": args.eval_episodes,
            "seed": args.eval_seed,
            "max_steps": args.eval_max_steps,
        },
        "seeds": args.seeds,
        "complete": False,
        "per_seed": {},
    }

    earlier = resumed_run(args.output, results) if args.resume else {}
    results_file = ResultsFile(args.output, results, earlier.get("wall_seconds", 0.0))

    def on_chain(arm: str, seed: int, rounds: list[dict]) -> None:
        per_seed = results["per_seed"].setdefault(str(seed), {})
        per_seed[arm] = rounds
        results["per_seed"][str(seed)] = {name: per_seed[name] for name in args.arms if name in per_seed}
        results_file.save()

    finished = [
        (arm, int(seed), rounds)
        for seed, chains in earlier.get("per_seed", {}).items()
        for arm, rounds in chains.items()
    ]
    outside = [
        f"{arm} of seed {seed}" for arm, seed, _ in finished if arm not in args.arms or seed not in args.seeds
    ]
    if outside:  # rewriting the file would lose them
        raise SystemExit(
            f"--resume: {args.output} holds {', '.join(outside)}; keep them in --arms and --seeds"
        )
    for arm, seed, rounds in finished:
        on_chain(arm, seed, rounds)
    done = {(arm, seed) for arm, seed, _ in finished}
    if args.resume:
        print(f"resuming {args.output}: {len(done)} of {len(args.arms) * len(args.seeds)} chains done")
    run_jobs(args, on_chain, done)
    results |= {"summary": summarise(results["per_seed"], args.rounds), "complete": True}
    results_file.save()
    if args.output:
        plot_results(results, args.output.with_suffix(".png"))
    print_table(results)
    if args.output:
        print(f"results: {args.output}\nplot: {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
