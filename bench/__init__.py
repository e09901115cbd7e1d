"""Benchmarks and quality reports run against the real models, store and simulator (not tests)."""
