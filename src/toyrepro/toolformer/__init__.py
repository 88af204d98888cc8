"""Toolformer (Schick et al. 2023): a model teaches itself calculator calls."""
