"""Topic classifier and tag filter. Not built yet (issue #4)."""
