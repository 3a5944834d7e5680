"""User context from five signals, candidates, LightGBM LambdaRank, feeds. Not built yet (issue #5)."""
