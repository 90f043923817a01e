"""How any cell is measured: planning, worker sessions, timing, statistics, parity, the journal and the
result rows. Backend-agnostic and Kedro-free."""
