"""The Workspace (names become objects here) and the notebook helpers."""
