"""benchmarks/field_recipe.py with three trial architectures beside the shipped presets (session 13,
issue 20: which decoder size pays at which rate), picked by complexity=NAME:

- mix: the low preset's ARM (8 context, 8 hidden, 1 layer) with the medium synthesis (16, 6);
- mix2: a wider one-layer ARM (12 context, 12 hidden) with the medium synthesis (shipped in
  session 14 as the `high` preset);
- mix3: the medium ARM (12, 12, 2 layers) with the low synthesis (8, 2).

    OUT=ROWS.jsonl PYTHONPATH=. .venv/bin/python benchmarks/field_recipe_presets.py NAME \
        iterations=1800 complexity=mix2 cases=kodim05:0.0005,kodim23:0.0005,kodim15:0.001
"""

import runpy
import sys
from pathlib import Path

from dappled.models.field.layout import PRESETS, Arch

PRESETS["mix"] = Arch(ctx=8, arm_hidden=8, arm_layers=1, synth_hidden=16, res_hidden=6)
PRESETS["mix2"] = PRESETS["high"]  # the same architecture, under its session-13 name
PRESETS["mix3"] = Arch(ctx=12, arm_hidden=12, arm_layers=2, synth_hidden=8, res_hidden=2)

if __name__ == "__main__":
    sys.argv[0] = "field_recipe.py"
    runpy.run_path(str(Path(__file__).resolve().parent / "field_recipe.py"), run_name="__main__")
