"""Error budgets with pandas: the event ledger, accounting, backtests, attribution, charts."""
