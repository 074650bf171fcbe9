"""Grafana dashboards as code (grafana-foundation-sdk).

``python -m dashboards.render`` writes every dashboard in ``DASHBOARDS`` as
JSON to ``helm/guardian/files/dashboards/`` (the Helm chart ships whatever
lands there); ``--check`` fails when the committed JSON is stale.
"""
