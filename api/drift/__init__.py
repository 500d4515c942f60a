"""Drift: has a feature's spend, latency, errors or quality moved, beyond chance?

``stats`` holds the tests' arithmetic and the verdict rule (no I/O), ``sql`` the
statements that compute both windows' statistics in one pass per table,
``report`` runs them and assembles the answer, ``models`` its shape and
``routes`` serves ``GET /api/v1/drift``.
"""
