"""Benchmarks: each module has ``measure(**options) -> dict`` (one table row) and a CLI; ``run.py`` runs them all."""
