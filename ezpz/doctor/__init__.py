"""``ezpz doctor``: diagnostics for this machine, its scheduler job and a launch spec."""
