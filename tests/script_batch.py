"""Run several of our scripts one after the other in this one fresh interpreter without
robocandywrapper, as `run_scripts(..., without_robocandywrapper=True)` asks: `python script_batch.py
CALLS RESULTS`, CALLS a JSON list of [script, args], RESULTS where the runs go as JSON. Hidden,
robocandywrapper fails to import as a missing module does, from the first import on."""

import dataclasses
import json
import sys
from pathlib import Path

sys.modules["robocandywrapper"] = None

sys.path.insert(0, str(Path(__file__).parent))

from subprocess_helpers import REPO, run_in_process  # noqa: E402

calls = json.loads(Path(sys.argv[1]).read_text())
runs = [run_in_process(REPO / "scripts" / script, args) for script, args in calls]
Path(sys.argv[2]).write_text(json.dumps([dataclasses.asdict(run) for run in runs]))
