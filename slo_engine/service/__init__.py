"""`slo-engine run`: the engine's jobs, the scheduler, the HTTP API, its own metrics."""
