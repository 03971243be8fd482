"""`sparkml init DIR`: a new project from the template in templates/project/."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from ..core.errors import ConfigError

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "project"
PACKAGE_DIR = "__package__"
RENAMED = {"gitignore": ".gitignore"}  # kept without the dot so that packaging keeps it


def package_name(directory: Path) -> str:
    """A Python package name from a directory name: `my-stocks` -> `my_stocks`."""
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", directory.resolve().name).strip("_").lower()
    if not name or name[0].isdigit():
        name = f"project_{name}"
    return name


def init(directory: Path, package: str | None = None) -> dict:
    """Write the project skeleton into `directory` (new or empty); nothing is overwritten."""
    package = package or package_name(directory)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", package) or keyword.iskeyword(package):
        raise ConfigError(f"package name {package!r} is not a Python identifier: give one "
                          "(letters, digits and _, not starting with a digit)")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"{directory} already exists and is not an empty directory: "
                          "nothing written (give a new or empty directory)")
    project = directory.resolve().name
    written = []
    for source in sorted(TEMPLATE.rglob("*")):
        rel = source.relative_to(TEMPLATE)
        if source.is_dir() or "__pycache__" in rel.parts or source.suffix == ".pyc":
            continue
        parts = [package if p == PACKAGE_DIR else RENAMED.get(p, p) for p in rel.parts]
        target = directory.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text().replace("{{project}}", project).replace("{{package}}", package)
        target.write_text(text)
        written.append(str(target.relative_to(directory)))
    (directory / "conf" / "local").mkdir(parents=True, exist_ok=True)  # git-ignored overrides
    return {"project": project, "package": package, "directory": str(directory.resolve()),
            "files": written}
