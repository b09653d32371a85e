"""ezpz's plugin system (pluggy, project name and entry-point group ``ezpz``)."""
