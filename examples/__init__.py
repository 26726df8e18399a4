"""Runnable examples, each also importable: `importlib.import_module("examples.01_basic_sse")`."""
