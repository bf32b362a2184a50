"""The wheel installs one import name, `leadflow`, with every data file the package reads at run time."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_holds_only_the_leadflow_namespace_and_its_data(tmp_path: Path) -> None:
    # Built from a clean copy: setuptools would otherwise reuse (and ship) whatever an earlier build left
    # in the checkout's build/ folder.
    source = tmp_path / "source"
    junk = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".*cache", "tests", "*.db*")
    shutil.copytree(ROOT, source, ignore=junk)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("leadflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"leadflow"}, tops
    for needed in (
        "leadflow/cli/main.py",
        "leadflow/flows/automations.yaml",
        "leadflow/leads/config/examples/leadflow.yaml",
        "leadflow/leads/db/migrations/env.py",
        "leadflow/leads/db/migrations/script.py.mako",
        "leadflow/templates/base.html",
        "leadflow/templates/email.css",
        "leadflow/templates/warm-up/1-welcome.html",
        "leadflow/web/pages/unsubscribed.html",
        "leadflow/demo/data.py",
    ):
        assert needed in names, needed
    versions = [n for n in names if n.startswith("leadflow/leads/db/migrations/versions/") and n.endswith(".py")]
    assert len(versions) >= 9, versions
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert "leadflow = leadflow.cli.main:app" in zipfile.ZipFile(wheel).read(entry[0]).decode()
