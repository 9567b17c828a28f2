"""Shared set-up of the bot tests.

discord.py 2.x imports ``audioop`` (deprecated since Python 3.11); under
``filterwarnings = error`` that import would fail, so discord is imported here once,
with that one warning ignored, before any test module imports it.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord  # noqa: F401
