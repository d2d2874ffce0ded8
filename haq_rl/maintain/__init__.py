"""Maintainer scripts, run with ``python -m``: :mod:`haq_rl.maintain.ship` refreshes the shipped models."""
