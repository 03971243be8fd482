"""The `sparkml` command: arguments in, the Workspace called, exit codes out (commands.py);
`sparkml init`'s project template (scaffold.py)."""

from .commands import main  # noqa: F401 (the console script and the jobs call it)
