"""Patch anomaly detection: scoring (``score``), labels, metrics, λ calibration, baselines, evaluation, plots.

Submodules are imported explicitly (``from edgeae.anomaly.score import make_scorer``); nothing heavy here.
"""
