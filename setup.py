"""Maps the project's top-level folders under the `leadflow` namespace (the rest is in pyproject.toml).

`leads/` installs as `leadflow.leads`, `cli/` as `leadflow.cli`, and so on; an editable install maps
them the same way, so code and tests import `leadflow.…` in both.
"""

from setuptools import find_packages, setup

FOLDERS = ["leads", "connectors", "nurture", "handoff", "flows", "cli", "templates", "web", "demo"]

setup(
    packages=[f"leadflow.{name}" for name in find_packages(include=[f"{f}*" for f in FOLDERS])],
    package_dir={f"leadflow.{folder}": folder for folder in FOLDERS},
)
