"""Values of the launch path: the spec and its layers, templates, allocations, plans, doctor checks.

Modules here hold data and the rules that validate it; they read no files
(except a config file the user names), run no programs and import nothing
above them (see docs/architecture.md).
"""
