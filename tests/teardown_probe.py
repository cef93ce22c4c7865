"""`python teardown_probe.py REPORT_DIR SCRIPT ARGS...` runs SCRIPT as `python SCRIPT ARGS...` would,
and writes `REPORT_DIR/rank<RANK>.json` with how many DistributedDataParallel models were still
alive when the process group was destroyed.

One alive then frees the group from DDP's Reducer with the GIL held, which can hang the process at
exit (see `rewact_tools.training.end_training`). Nothing is collected here before counting: a model
only cyclic garbage holds is still alive to the Reducer."""

from __future__ import annotations

import gc
import json
import os
import runpy
import sys
from pathlib import Path

import torch.distributed
from torch.nn.parallel import DistributedDataParallel

report_dir, script, *args = sys.argv[1:]
destroy_process_group = torch.distributed.destroy_process_group


def destroy_and_report(*destroy_args, **destroy_kwargs):
    alive = sum(isinstance(obj, DistributedDataParallel) for obj in gc.get_objects())
    report = Path(report_dir) / f"rank{os.environ['RANK']}.json"
    report.write_text(json.dumps({"ddp_models_alive": alive}))
    return destroy_process_group(*destroy_args, **destroy_kwargs)


torch.distributed.destroy_process_group = destroy_and_report
sys.argv = [script, *args]
sys.path[0] = str(Path(script).resolve().parent)
runpy.run_path(script, run_name="__main__")
