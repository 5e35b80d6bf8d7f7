"""Evaluation: metrics, the three scenarios, and their tables."""

from .metrics import benign_accuracy, watermark_success_rate
from .report import markdown_table, rich_table
from .scenarios import SCENARIOS, ScenarioRow, evaluate_scenarios, independent_trigger

__all__ = ["SCENARIOS", "ScenarioRow", "benign_accuracy", "evaluate_scenarios", "independent_trigger",
           "markdown_table", "rich_table", "watermark_success_rate"]
