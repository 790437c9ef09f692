"""Benchmarks: ``python -m bench.calls`` (load through real Asterisk, engine vs.
dialplan twin) and ``python -m bench.memory`` (engine memory per held call).
See docs/benchmarks.md for how to run them and the figures measured."""
