"""Types are a gate: mypy finds nothing in any leadflow package (strict for leads, nurture, handoff, connectors)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_reports_no_errors() -> None:
    env_path = str(Path(sys.executable).parent)
    bash = shutil.which("bash") or "/bin/bash"
    result = subprocess.run(
        [bash, str(ROOT / ".ci" / "typecheck")],
        capture_output=True,
        text=True,
        timeout=900,
        env={"PATH": f"{env_path}:/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
