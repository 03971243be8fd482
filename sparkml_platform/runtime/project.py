"""The user's project code: its Python packages found under the project root, made importable
without PYTHONPATH, zipped for executors, and versioned.

A project is the directory holding `conf/`. Its packages (`platform.yml` `project.packages`,
default: every directory with an `__init__.py` directly under the root or under `src/`) hold
the transformations, entity functions and estimators its configuration names by dotted path.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import types
import weakref
import zipfile
from pathlib import Path

from ..config import Config, load_config
from ..core.envvars import SPARKML_CODE_VERSION
from ..core.errors import ConfigError
from ..core.version import __version__
from ..storage import places

FRAMEWORK = "sparkml_platform"
_PROJECTS: "weakref.WeakKeyDictionary[Config, Project]" = weakref.WeakKeyDictionary()


def open_project(conf_dir: str | os.PathLike | None = None, env: str | None = None) -> Config:
    """A project ready to run: its configuration loaded and checked (config/), its places
    checked (storage/places.py) and its own packages importable without PYTHONPATH. Every
    entry point (the Workspace, notebooks, jobs, the CLI) opens a project through here."""
    config = load_config(conf_dir, env)
    places.check(config)
    project_of(config).activate()
    return config


def project_of(config: Config) -> "Project":
    """The project's own code (its packages), made once per loaded configuration."""
    if config not in _PROJECTS:
        settings = config.platform.project
        _PROJECTS[config] = Project(config.root, settings.name, settings.packages)
    return _PROJECTS[config]
SKIPPED = ("__pycache__", ".ipynb_checkpoints")


class Project:
    """Where the project's packages are, and what their code is."""

    def __init__(self, root: Path, name: str | None, packages: list[str] | None):
        self.root = root
        self.name = name or root.name
        self.packages = self._locate(packages)  # package name -> its directory (None: installed)

    def _locate(self, names: list[str] | None) -> dict[str, Path | None]:
        homes = [self.root / "src", self.root]
        if names is None:  # discover: every package directly under src/ or the root
            found: dict[str, Path | None] = {}
            for home in homes:
                for init in sorted(home.glob("*/__init__.py")) if home.is_dir() else []:
                    if init.parent.name != FRAMEWORK:  # the framework ships itself
                        found.setdefault(init.parent.name, init.parent)
            return found
        located: dict[str, Path | None] = {}
        for name in names:
            home = next((h / name for h in homes if (h / name / "__init__.py").is_file()), None)
            if home is None and not _importable(name):
                raise ConfigError(f"platform.yml: project.packages: no package {name!r} under "
                                  f"{self.root} or {self.root / 'src'} (a directory with an "
                                  "__init__.py), nor installed")
            # Not on disk but importable: shipped with the job (--py-files) or pip-installed.
            located[name] = home
        return located

    @property
    def paths(self) -> list[Path]:
        return list(dict.fromkeys(p.parent for p in self.packages.values() if p is not None))

    def activate(self) -> None:
        """Put the packages' parent directories first on sys.path, so the dotted paths in the
        configuration import without PYTHONPATH."""
        for path in reversed(self.paths):
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))

        importlib.invalidate_caches()

    def files(self) -> list[tuple[Path, str]]:
        """Every file of the packages on disk, with its name inside a zip of them."""
        out = []
        for name, home in sorted(self.packages.items()):
            if home is None:
                continue
            for path in sorted(home.rglob("*")):
                rel = path.relative_to(home.parent)
                if path.is_file() and not any(part in SKIPPED for part in rel.parts) \
                        and path.suffix not in (".pyc", ".pyo"):
                    out.append((path, rel.as_posix()))
        return out

    def content_hash(self) -> str | None:
        """A hash of every file of the packages (names and bytes); None without packages."""
        files = self.files()
        if not files:
            return None
        digest = hashlib.sha256()
        for path, rel in files:
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]

    def zip(self, folder: Path) -> Path | None:
        """The packages as one zip for `--py-files` / `addPyFile`, named by content (so two
        versions never share a name within a Spark application); None without packages."""
        content = self.content_hash()
        if content is None:
            return None
        target = folder / f"project-{self.name}-{content}.zip"
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{target.name}.{os.getpid()}.tmp"
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
                for path, rel in self.files():
                    archive.write(path, rel)
            os.replace(tmp, target)  # atomic: concurrent commands never read half a zip
        return target

    def code_version(self) -> dict:
        """The project's code (git commit and dirty flag of the project's checkout, and a hash
        of its packages' content) and the framework's version, as every artifact records it."""
        recorded = SPARKML_CODE_VERSION.get()
        if recorded:  # set by spark-submit.sh for a driver far from the checkout
            return json.loads(base64.b64decode(recorded))
        git = _git(self.root)
        return {"project": self.name, **git, "packages": sorted(self.packages),
                "content_hash": self.content_hash(), "framework": framework_version()}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _git(root: Path) -> dict:
    """The commit of the checkout holding `root`, and whether `root` has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode == 0:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                                    cwd=root, capture_output=True, text=True, timeout=10)
            return {"git_commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"git_commit": None, "dirty": None}


@functools.lru_cache(maxsize=None)
def framework_version() -> dict:
    """The framework's own version, and its commit when it runs from its own checkout (not
    from an install that happens to sit inside some other repository)."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / ".git").exists():
        return {"version": __version__}
    return {"version": __version__, **_git(checkout)}


def function_fingerprint(func) -> str:
    """A hash of a function's source and of the source of what it uses from its own top-level
    package (helpers, classes, modules), followed through their references in turn: editing
    any of them changes it. Code from other packages (pyspark, ...) is not followed."""
    top = (getattr(func, "__module__", "") or "").split(".")[0]
    seen: set[int] = set()
    parts: list[str] = []

    def visit(obj) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        try:
            parts.append(inspect.getsource(obj))
        except (OSError, TypeError):
            parts.append(repr(obj))
            return
        if isinstance(obj, types.ModuleType):
            return  # a module's whole source is in: nothing further to follow
        for used in _referenced(obj):
            owner = getattr(used, "__module__", None) if not isinstance(used, types.ModuleType) \
                else used.__name__
            if owner and owner.split(".")[0] == top:
                visit(used)

    visit(func)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _referenced(obj) -> list:
    """Globals a function (or each method of a class) names, resolved in its module."""
    functions = [obj] if inspect.isfunction(obj) else \
        [v for v in vars(obj).values() if inspect.isfunction(v)] if inspect.isclass(obj) else []
    found = []
    for function in functions:
        names: set[str] = set()
        codes = [function.__code__]
        while codes:  # nested functions and lambdas have code objects of their own
            code = codes.pop()
            names.update(code.co_names)
            codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        scope = function.__globals__
        found += [scope[n] for n in sorted(names) if n in scope]
    return found
