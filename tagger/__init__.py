"""Teacher LLM labeling, student distillation and intent-tag serving. Not built yet (issue #3)."""
