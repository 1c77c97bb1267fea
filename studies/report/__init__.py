"""Rendering of study results: one atomic writer (``write``), figures (``figures``), markdown tables
(``markdown``). Nothing here computes a result."""
