"""Built-in sinks: stages at the end of a chain that write items somewhere.

Each lives in its own module (``pipelines.sinks.jsonl.JsonLinesSink`` ...) and is
imported by its full path, so only pipelines that name the Discord sink load discord.py.
"""
