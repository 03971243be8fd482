# Two commands on a fresh machine: `make demo` and `make test`. Both set up first;
# a second run of the set-up is a no-op.
PYTHON ?= $(shell command -v python3.11 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# Bytecode is written as modules are first imported, whatever the caller's environment says: with
# PYTHONDONTWRITEBYTECODE set (as on this machine) every process, each Spark Python worker too,
# would compile every module it imports, every time it starts. Compiling all of the venv at
# install instead (uv's --compile-bytecode) spends half a minute on modules never imported.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: prerequisites setup jars demo test test-fast test-cluster clean-lake clean

# The system programs each target needs (tools/prerequisites.py knows them): checked first,
# before any set-up; installed with apt-get where this user may, else named with the command
# that installs them (exit 2). A target's PREREQUISITES reach the set-up it depends on.
PREREQUISITES = demo
test: PREREQUISITES = test
test-cluster: PREREQUISITES = test-cluster
prerequisites:
	@$(PYTHON) tools/prerequisites.py $(PREREQUISITES)

setup: prerequisites $(INSTALLED) jars

# Reinstall only when the dependency pins change. uv installs the same pins as pip would, in
# about a minute against pip's two and a half here.
$(INSTALLED): pyproject.toml constraints.txt | prerequisites
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "uv>=0.9"
	$(PY) -m uv pip install -q --python $(PY) -c constraints.txt -e ".[test]"
	touch $(INSTALLED)

# The Delta jars from Maven Central into the user's shared cache, or SPARKML_JARS_DIR (a
# no-op when it is whole).
jars: $(INSTALLED)
	@$(PY) -m sparkml_platform.runtime.setup fetch $${SPARKML_JARS_DIR:-} >/dev/null && \
	echo "Delta jars: $${SPARKML_JARS_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/sparkml/jars}"

demo: setup
	$(VENV)/bin/sparkml run flights

# The slice project's run (tests/conftest.py `flights_project`), kept under a key of what it
# depends on: `make test` makes it, `make test-cluster` copies it instead of running it again.
SLICE_CACHE := .sparkml/test-slice
# Runs a command in a process group of its own (setsid(1), which macOS lacks): killed as a group.
NEW_GROUP = $(PY) -c "import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"

# First the layering contract (pyproject.toml [tool.importlinter]: an import up a layer, between
# two stages or in a circle fails the target) and the docs site, built --strict (a broken link
# or a page missing from mkdocs.yml fails it too). Then the tests, in two pytest processes at
# once: the slow integration tests (the slice pipeline and everything that reads it, servers)
# start in the background while tests/unit (pure cores, no JVM, a minute and a half) runs
# first in the foreground, then the other integration tests. A unit failure stops everything
# (the slow run is its own process group). On two cores both processes are CPU-bound and the
# overlap saves little; the slow run's report follows the other's, each listing its slowest.
# The class archive (set-up's last step, a JVM run for most of a minute on a fresh clone) is
# made at the head of the slow run, beside the unit tests, which need no JVM; a session that
# starts before it is there starts without it, only slower.
test: prerequisites $(INSTALLED)
	@$(PY) -m sparkml_platform.runtime.setup jars $${SPARKML_JARS_DIR:-} >/dev/null
	@mkdir -p .sparkml; $(VENV)/bin/lint-imports --no-cache --no-logo > .sparkml/lint-imports.log || \
	{ cat .sparkml/lint-imports.log; exit 1; }
	@NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir .sparkml/site
	@export SPARKML_TEST_SLICE_CACHE=$(SLICE_CACHE); \
	$(NEW_GROUP) sh -c '$(PY) -m sparkml_platform.runtime.class_archive build $${SPARKML_JARS_DIR:-} >/dev/null && \
	exec $(VENV)/bin/pytest -q -ra --durations=12 -m slow -p no:cacheprovider tests/integration' > .sparkml/test-slow.log 2>&1 & \
	slow=$$!; echo "== unit tests"; $(VENV)/bin/pytest -q -ra --durations=5 -p no:cacheprovider tests/unit || \
	{ kill -TERM -- -$$slow 2>/dev/null; wait $$slow; exit 1; }; \
	echo "== integration tests"; $(VENV)/bin/pytest -q -ra --durations=8 -m "not slow" -p no:cacheprovider tests/integration; fast=$$?; \
	wait $$slow; slow=$$?; echo "== slow integration tests (exit $$slow)"; cat .sparkml/test-slow.log; \
	test $$fast -eq 0 -a $$slow -eq 0

# The unit tests only: pure cores, no JVM (tests/unit/conftest.py refuses one).
test-fast: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

# Jobs on a standalone cluster and on a single-node YARN (Hadoop mini-cluster, jars from
# Maven Central) from a packed environment: packing and containers take minutes, so these
# run apart from `make test` (CI runs both). Two pytest processes at once: the tests on the
# slice's lake on HDFS and S3 (with the YARN jobs, which share that HDFS run), and the rest;
# much of either is waiting on containers, archives and servers. They share one packed
# environment (made once, under a lock) and the slice run `make test` made.
test-cluster: setup
	@mkdir -p .sparkml; export SPARKML_TEST_SLICE_CACHE=$(SLICE_CACHE); \
	$(VENV)/bin/pytest -q -ra --durations=8 -m remote_lake -p no:cacheprovider tests/cluster > .sparkml/test-remote.log 2>&1 & \
	remote=$$!; $(VENV)/bin/pytest -q -ra --durations=8 -m "not remote_lake" -p no:cacheprovider tests/cluster; other=$$?; \
	wait $$remote; remote=$$?; echo "== tests on remote lakes (exit $$remote)"; cat .sparkml/test-remote.log; \
	test $$other -eq 0 -a $$remote -eq 0

clean-lake:
	rm -rf .sparkml/lake .sparkml/staging .sparkml/mlflow.db .sparkml/mlartifacts .sparkml/environments

clean: clean-lake
	rm -rf $(VENV) .sparkml
