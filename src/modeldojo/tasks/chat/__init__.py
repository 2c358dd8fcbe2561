"""Chat: instruction tuning of a causal language model (foundations; the task registers in a later change)."""
