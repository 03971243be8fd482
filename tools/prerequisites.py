"""The system programs each `make` target needs, found, installed or named before anything
else runs. One place: the Makefile runs it first for every target, `.ci/run` only calls
`make`, and the tests look programs up through `find()` so a test and this check never
disagree about what is installed.

    python3 tools/prerequisites.py demo|test|test-cluster [--check-only]

Found everything: silent, exit 0. Missing something on a Debian-like machine where packages
may be installed (root, or sudo without a password): one line, then apt-get installs it
(its output in .sparkml/prerequisites-apt.log). Otherwise: each missing program and the
command that installs it, exit 2, within a second and before any set-up.

Standard library only, and no syntax newer than Python 3.6: it runs with whatever `python3`
the user has, so it can say that Python 3.11 is missing.
"""

import ctypes.util
import glob
import os
import platform
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APT_LOG = os.path.join(ROOT, ".sparkml", "prerequisites-apt.log")
EXIT_MISSING = 2


class Need:
    """A program a target needs: how it is found, and the package that provides it on
    Debian/Ubuntu and on macOS (Homebrew). `optional` ones (speed, not correctness) are
    installed with the rest when installing is possible, and otherwise only noted."""

    def __init__(self, name, what, apt, brew, optional=False):
        self.name, self.what, self.apt, self.brew, self.optional = name, what, apt, brew, optional


NEEDS = {
    "python3.11": Need("python3.11", "Python 3.11 with venv", "python3.11 python3.11-venv", "python@3.11"),
    "java": Need("java", "a JDK, 17 or newer (java and javac)", "openjdk-17-jdk-headless", "openjdk@17"),
    "mvn": Need("mvn", "Maven (fetches the Delta jars)", "maven", "maven"),
    "blas": Need("libopenblas", "OpenBLAS, the native BLAS MLlib uses", "libopenblas0", "openblas", optional=True),
    "git": Need("git", "git (the tests version projects)", "git", "git"),
    "redis-server": Need("redis-server", "Redis (the online store's tests)", "redis-server", "redis"),
    "chromium": Need("chromium", "Chromium (the model report's browser test)", "chromium", "--cask chromium"),
    "postgresql": Need("initdb", "PostgreSQL server binaries (the tracking server's test)", "postgresql",
                       "postgresql@16"),
}

# Homebrew formulae it installs beside, not on, the PATH.
KEG_ONLY = ("openjdk@17", "postgresql@16", "python@3.11")

# What each target needs; each target needs what the one before it does.
TARGETS = {"demo": ["python3.11", "java", "mvn", "blas"]}
TARGETS["test"] = TARGETS["demo"] + ["git", "redis-server", "chromium"]
TARGETS["test-cluster"] = TARGETS["test"] + ["postgresql"]

# Ubuntu's names where they differ from Debian's (its chromium is a snap behind this package).
UBUNTU_APT = {"chromium": "chromium-browser"}
# Chromium's names: Debian's package, Ubuntu's, and the Homebrew cask's application.
CHROMIUM = ("chromium", "chromium-browser", "/Applications/Chromium.app/Contents/MacOS/Chromium")


def find(need: str, path=None):
    """Where `need` (a key of NEEDS) is on this machine, or None. `path` replaces $PATH."""
    which = lambda name: shutil.which(name, path=path)  # noqa: E731
    if need == "python3.11":
        python = sys.executable if sys.version_info[:2] == (3, 11) else which("python3.11")
        return python if python and _has_venv(python) else None
    if need == "java":
        java, javac = which("java"), which("javac")
        return java if java and javac and java_major(java) >= 17 else None
    if need == "blas":
        # OpenBLAS itself: Debian's reference BLAS (libblas3) answers to "blas" too, slower
        # than MLlib's Java BLAS. Installing libopenblas0 makes it libblas.so.3.
        return ctypes.util.find_library("openblas")
    if need == "chromium":
        for name in CHROMIUM:
            found = name if os.path.isabs(name) and os.access(name, os.X_OK) else which(name)
            if found:
                return found
        return None
    if need == "postgresql":
        return postgres_bin(path)
    return which(NEEDS[need].name)


def postgres_bin(path=None):
    """The directory of PostgreSQL's server programs (initdb, pg_ctl, createdb): Debian keeps
    them out of PATH in /usr/lib/postgresql/NN/bin (the newest wins); Homebrew's are on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb", path=path)
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


def java_major(java: str) -> int:
    """The major version `java -version` reports (1.8 -> 8), 0 when it cannot be read."""
    try:
        out = subprocess.run([java, "-version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _has_venv(python: str) -> bool:
    # Debian splits venv's pip bootstrap (ensurepip) into python3.11-venv.
    if python == sys.executable:
        import importlib.util
        return importlib.util.find_spec("ensurepip") is not None
    return subprocess.run([python, "-c", "import ensurepip"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


# --- deciding (pure) -----------------------------------------------------------------------


def plan(target: str, found: dict, system: str, apt: bool, may_install: bool, sudo: bool):
    """What to do about `target` given what was `found` (need -> location or None), on
    `system` (system_name()), with apt-get there or not, allowed to install or not.
    Returns (action, missing, note): action is "ok", "install" (then `note` is the apt-get
    command) or "stop" (then `note` is the message naming each missing program and how to
    install it). Optional needs never stop a run."""
    missing = [n for n in TARGETS[target] if not found.get(n)]
    required = [n for n in missing if not NEEDS[n].optional]
    if not missing:
        return "ok", [], ""
    if apt and may_install:
        return "install", missing, apt_command(missing, system, sudo)
    if not required:
        return "ok", missing, "note: not found, %s; install with: %s" % (
            ", ".join("%s (%s)" % (NEEDS[n].name, NEEDS[n].what) for n in missing),
            install_hint(missing, system, apt))
    lines = ["`make %s` needs programs this machine does not have:" % target]
    lines += ["  - %s: %s%s" % (NEEDS[n].name, NEEDS[n].what, " (optional, for speed)" if NEEDS[n].optional else "")
              for n in missing]
    lines.append("Install them with:")
    lines.append("  " + install_hint(missing, system, apt))
    return "stop", required, "\n".join(lines)


def apt_packages(needs, system: str) -> str:
    names = UBUNTU_APT if system == "ubuntu" else {}
    return " ".join(names.get(n, NEEDS[n].apt) for n in needs)


def apt_command(needs, system: str, sudo: bool) -> str:
    return _apt("install -y -q --no-install-recommends " + apt_packages(needs, system), sudo)


def _apt(args: str, sudo: bool) -> str:
    # sudo resets the environment: the front end is named on its command line.
    return ("sudo DEBIAN_FRONTEND=noninteractive " if sudo else "") + "apt-get " + args


def install_hint(needs, system: str, apt: bool) -> str:
    """The command a user runs to install `needs`: Homebrew's on macOS, apt-get's elsewhere."""
    if system == "Darwin":
        formulae = [NEEDS[n].brew for n in needs if not NEEDS[n].brew.startswith("--cask")]
        casks = [NEEDS[n].brew.split()[-1] for n in needs if NEEDS[n].brew.startswith("--cask")]
        parts = (["brew install " + " ".join(formulae)] if formulae else []) + \
                (["brew install --cask " + " ".join(casks)] if casks else [])
        kegs = [NEEDS[n].brew for n in needs if NEEDS[n].brew in KEG_ONLY]
        return " && ".join(parts) + ("\n  then put their programs on PATH: " + " ".join(
            'PATH="$(brew --prefix %s)/bin:$PATH"' % keg for keg in kegs) if kegs else "")
    command = "sudo apt-get install " + apt_packages(needs, system)
    return command if apt else command + "   (Debian/Ubuntu; on other systems, their own packages)"


# --- acting (the edge) ---------------------------------------------------------------------


def system_name() -> str:
    """"Darwin" on macOS, "ubuntu" on Ubuntu, else platform.system() ("Linux" on Debian)."""
    try:
        with open("/etc/os-release") as release:
            if re.search(r"^ID=\"?ubuntu", release.read(), re.M):
                return "ubuntu"
    except OSError:
        pass
    return platform.system()


def may_install():
    """(allowed, through sudo): root, or sudo that asks no password."""
    if os.geteuid() == 0:
        return True, False
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL).returncode == 0:
        return True, True
    return False, False


def install(needs, system: str, sudo: bool) -> None:
    """apt-get install `needs`, the package lists refreshed only when it fails without; when
    the whole set still fails (one package this release lacks), each need on its own, so that
    the others are installed and the check names only what is still missing."""
    os.makedirs(os.path.dirname(APT_LOG), exist_ok=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(APT_LOG, "a") as log:
        def run(command):
            return subprocess.run(command, shell=True, stdout=log, stderr=subprocess.STDOUT,
                                  env=env).returncode == 0
        command = apt_command(needs, system, sudo)
        if run(command) or (run(_apt("update -q", sudo)) and run(command)):
            return
        for need in needs:
            run(apt_command([need], system, sudo))


def main(argv) -> int:
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1 or args[0] not in TARGETS:
        print("usage: prerequisites.py {%s} [--check-only]" % "|".join(TARGETS), file=sys.stderr)
        return EXIT_MISSING
    target = args[0]
    found = {n: find(n) for n in TARGETS[target]}
    allowed, sudo = may_install() if "--check-only" not in argv else (False, False)
    system = system_name()
    action, missing, note = plan(target, found, system, bool(shutil.which("apt-get")), allowed, sudo)
    if action == "install":
        print("prerequisites: installing %s with apt-get (log: %s)" % (
            apt_packages(missing, system), os.path.relpath(APT_LOG)), flush=True)
        install(missing, system, sudo)
        found = {n: find(n) for n in TARGETS[target]}
        action, missing, note = plan(target, found, system, True, False, sudo)
        if action == "stop":
            note += "\n(apt-get could not install them: see %s)" % os.path.relpath(APT_LOG)
    if note:
        print(note, file=sys.stderr)
    return EXIT_MISSING if action == "stop" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
