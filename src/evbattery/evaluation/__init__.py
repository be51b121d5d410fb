"""Evaluation: metrics, model evaluation, background-bias analysis."""
