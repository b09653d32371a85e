"""Python environment tools: find the active environment, pack it, and broadcast it to every node."""
