RUN_TIMEOUT_S = 600.0
"""How long a test's whole run on virtual watches may take before it is called hung. Only a
guard against a hang: a fresh-clone CI run on a loaded 2-core machine takes several times as
long as a quiet one, and a tight guard would turn slowness into failures."""
