"""Production monitoring: per-column data drift tests with effect-size floors (`drift`), MMD drift on
embeddings (`drift.embedding_drift`), and label-free classifier performance estimation (`cbpe`)."""
