"""``import jsurgery`` loads the surgery core only: no RL, checkpointing or plotting libraries."""

import json
import subprocess
import sys

HEAVY = ("gymnax", "orbax", "matplotlib", "tqdm")


def test_import_jsurgery_loads_no_heavy_dependency():
    code = (
        "import json, sys; import jsurgery; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
