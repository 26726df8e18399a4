"""The servers the harness compares, run as `apps.<name>:app` with cwd=bench (see server.py)."""
