"""HTTP surface: the API, metrics and the status page (aiohttp).

``app`` builds and starts the application; ``schedules``, ``runs`` and ``health``
hold the handlers, ``auth`` the bearer tokens, ``problems`` the one mapping from errors
to RFC 9457 answers, ``inputs`` the strict request parsing, ``openapi`` the document.
"""
