"""Metrics, HTML report with plots, model card."""
