"""The one training loop shared by every neural task, with its optimizers, schedules,
fine-tuning strategies and checkpoints. Needs the `text` (or image/llm) extra: torch."""
