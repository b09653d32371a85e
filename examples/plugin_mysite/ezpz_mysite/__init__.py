"""ezpz plugin for MySite, a made-up cluster run by the MySite Batch System (MBS).

See :mod:`ezpz_mysite.plugin` for the hooks and ``docs/plugins.md`` in ezpz for
the walkthrough.
"""
