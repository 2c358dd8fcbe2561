"""Run trackers, attached to the event bus (MLflow with an embedded SQLite file by default)."""
