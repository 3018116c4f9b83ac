"""Debiasing methods: one module per method, all behind `fairbench.registry.METHODS`."""

from fairbench.methods.base import HParam, Method, MetricRow, Outcome, Paper, RunContext

__all__ = ["HParam", "Method", "MetricRow", "Outcome", "Paper", "RunContext"]
