"""Alerts: rules on report metrics, an evaluator with a persisted state machine, delivery.

``models`` validates rules, ``rules`` stores them, ``conditions`` turns a rule
into a finding through :mod:`tokentrail.api.metrics`, ``evaluate`` runs the
ok → firing → ok state machine, ``deliver`` signs and sends with retries,
``history`` records and lists what happened, ``scheduler`` runs passes inside
``tokentrail serve`` and ``routes`` exposes it all under ``/api/v1``.
"""
