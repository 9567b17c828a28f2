"""HTTP surface: the API, metrics and the status page (aiohttp).

``app`` builds and starts the application; ``schedules``, ``runs`` and ``health`` hold
the handlers, ``auth`` the bearer tokens, ``problems`` the one mapping from errors to
RFC 9457 answers, ``inputs`` the strict request parsing, ``openapi`` the document;
``metrics`` serves ``/metrics`` (``watch_discord`` takes the bot's connection probe),
``status_page`` the HTML page at ``/`` and ``charts`` the run chart as SVG and as PNG
(``history_chart_png`` is what the bot's ``/history`` attaches). Nothing here imports
``bot``.
"""
