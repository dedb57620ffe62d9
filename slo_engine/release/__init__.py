"""Release gates: the error-budget policy decision and the canary comparison."""
