"""The frame every closed-loop benchmark runs in: its run arguments (quick mode, threads, workers,
seeds, arms, results file, merging), the results file rewritten as jobs finish, and runs merged.

A benchmark keeps only what it measures: its arms, its jobs, its summary, table and figure.
Results are `{"per_seed": {seed: {label: result}}, ...}`, where a label is an arm or an arm's
variant (`<arm>_beta1.5`); merged runs must agree on the keys that make them comparable.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rewact_tools.atomic import write_json
from rewact_tools.lerobot_compat import HAS_SAMPLE_WEIGHTING


def add_run_arguments(
    parser: argparse.ArgumentParser, arms: Sequence[str], seeds: bool = True, resume: bool = False
) -> None:
    """--quick, --threads, --arms, --output and --merge; with `seeds`, --workers, --seeds and
    --merge-seeds too (a benchmark with one training seed runs its arms in one process); with
    `resume` (a benchmark whose jobs are independent (arm, seed) jobs), --resume."""
    parser.add_argument("--quick", action="store_true", help="tiny data and model, 2 eval episodes (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default 1)")
    parser.add_argument(
        "--arms",
        default=None,
        help=f"comma-separated, of {', '.join(arms)} (default: all; rabc needs LeRobot >= 0.6)",
    )
    parser.add_argument("--output", type=Path, default=None, help="results JSON (a PNG beside it)")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="PATH[:ARM=LABEL,...]",
        help="instead of running: join these results files into --output, renaming arms where asked",
    )
    if seeds:
        parser.add_argument(
            "--workers", type=int, default=1, help="processes running the jobs (one per core)"
        )
        parser.add_argument("--seeds", default=None, help="training seeds, comma-separated (default 0,1,2)")
        parser.add_argument(
            "--merge-seeds", default=None, help="with --merge: the seeds to keep, comma-separated"
        )
    if resume:
        parser.add_argument(
            "--resume",
            action="store_true",
            help="keep the (arm, seed) jobs --output already holds from a stopped run with the same "
            "settings and run only the rest, into the same file",
        )


def finish_run_arguments(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    arms: Sequence[str],
    defaults: Mapping[str, tuple[Any, Any]],
) -> argparse.Namespace:
    """Fill every argument left None from `defaults` (`name: (quick value, full value)`; `arms`
    defaults to all that this LeRobot runs), split the lists, and refuse what cannot run."""
    if args.merge and args.output is None:
        parser.error("--merge needs --output")
    if getattr(args, "resume", False) and (args.output is None or args.merge):
        parser.error("--resume needs --output (the stopped run's results file) and no --merge")
    runnable = ",".join(arm for arm in arms if arm != "rabc" or HAS_SAMPLE_WEIGHTING)
    filled = {"arms": (runnable, runnable)} | ({"seeds": ("0", "0,1,2")} if hasattr(args, "seeds") else {})
    for name, (quick, full) in (filled | dict(defaults)).items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.arms = args.arms.split(",")
    unknown = [arm for arm in args.arms if arm not in arms]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; known: {', '.join(arms)}")
    if "rabc" in args.arms and not HAS_SAMPLE_WEIGHTING:
        parser.error("the rabc arm needs LeRobot >= 0.6 (sample_weighting); leave it out with --arms")
    if hasattr(args, "seeds"):
        args.seeds = int_list(args.seeds)
        args.merge_seeds = None if args.merge_seeds is None else int_list(args.merge_seeds)
        if args.workers < 1:
            parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def int_list(text: str | int) -> list[int]:
    return [int(item) for item in str(text).split(",")]


class ResultsFile:
    """A run's results, rewritten to `path` (if any) whenever `save` is called: after every job,
    so a stopped run keeps what it finished; `wall_seconds` counts from the start, plus the
    `earlier_seconds` of the stopped run a resumed one continues."""

    def __init__(self, path: Path | None, results: dict, earlier_seconds: float = 0.0):
        self.path, self.results = path, results
        self._started = time.perf_counter() - earlier_seconds

    def save(self) -> None:
        self.results["wall_seconds"] = round(time.perf_counter() - self._started, 1)
        if self.path:
            write_json(self.path, self.results)


RESUME_FREE = ("date", "workers", "arms", "seeds", "complete", "per_seed", "summary", "wall_seconds")
"""Results keys a resumed run may change: its bookkeeping, and which jobs it runs."""


def resumed_run(path: Path, results: Mapping[str, Any]) -> dict:
    """The results file `path` of a stopped run this one continues (`per_seed`: the jobs it finished;
    `wall_seconds`), empty when there is none. Refused unless it ran with this run's settings: every
    key of `results` but RESUME_FREE, timings aside (`read_runs`' rule), as the JSON file holds it."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    differing = [
        key
        for key in results
        if key not in RESUME_FREE
        and _without_timings(earlier.get(key)) != _without_timings(json.loads(json.dumps(results[key])))
    ]
    if differing:
        raise SystemExit(f"--resume: {path} was run with other {', '.join(differing)}; give another --output")
    return earlier


def read_runs(
    paths: Sequence[Path], shared: Sequence[str], upgrade: Callable[[dict], dict] | None = None
) -> list[dict]:
    """The results files of runs to merge (each through `upgrade`, which fills in what older files
    did not record), refused unless they agree on every `shared` key. Timings (`*_seconds`) do not
    count: a value model reloaded from the cache in one run and trained in another is the same."""
    runs = [json.loads(Path(path).read_text()) for path in paths]
    runs = runs if upgrade is None else [upgrade(run) for run in runs]
    first = {key: _without_timings(runs[0].get(key)) for key in shared}
    for path, run in zip(paths[1:], runs[1:], strict=True):
        differing = [key for key in shared if _without_timings(run.get(key)) != first[key]]
        if differing:
            raise SystemExit(f"--merge: {path} differs from {paths[0]} in {', '.join(differing)}")
    return runs


def _without_timings(value: Any) -> Any:
    """`value` with every `*_seconds` entry of its dicts, at any depth, left out."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not k.endswith("_seconds")}
    if isinstance(value, list):
        return [_without_timings(item) for item in value]
    return value


def merge_runs(
    sources: Sequence[str | Path],
    shared: Sequence[str],
    seeds: Sequence[int] | None,
    relabel: Callable[[Any, str, str], Any],
    upgrade: Callable[[dict], dict] | None = None,
) -> tuple[list[dict], dict[str, dict]]:
    """The runs of `sources` (`PATH` or `PATH:arm=label,...`) and their results per seed, joined.

    The runs must agree on every `shared` key. A renamed arm's labels (the arm and its guided
    variants, `<arm>_beta<scale>`) take the new name, and `relabel(result, arm, label)` renames inside a result. A
    label twice in one seed is refused, and so are seeds with different labels (keep common seeds
    with `seeds`)."""
    paths, renames = [], []
    for source in map(str, sources):
        path, _, mapping = source.partition(":")
        paths.append(Path(path))
        renames.append(dict(pair.split("=", 1) for pair in mapping.split(",") if pair))
    runs = read_runs(paths, shared, upgrade)
    per_seed: dict[str, dict] = {}
    for path, run, rename in zip(paths, runs, renames, strict=True):
        for seed, results in run["per_seed"].items():
            if seeds is not None and int(seed) not in seeds:
                continue
            for name, result in results.items():
                arm = next((old for old in rename if name == old or name.startswith(f"{old}_beta")), None)
                label = name if arm is None else rename[arm] + name[len(arm) :]
                if label in per_seed.setdefault(seed, {}):
                    raise SystemExit(
                        f"--merge: {path} has {label} of seed {seed} again; rename it (PATH:{name}=NAME)"
                    )
                per_seed[seed][label] = result if arm is None else relabel(result, arm, rename[arm])
    labels = {seed: sorted(results) for seed, results in per_seed.items()}
    if len({tuple(names) for names in labels.values()}) > 1:
        raise SystemExit(f"--merge: the seeds have different arms {labels}; keep common seeds")
    return runs, per_seed


def unchanged(result: Any, arm: str, label: str) -> Any:
    """`relabel` for results that do not name their arm inside."""
    return result
