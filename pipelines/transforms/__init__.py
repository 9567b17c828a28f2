"""Built-in transforms: fetch, parse, extract, filter, deduplicate, and small sources.

Each lives in its own module (``pipelines.transforms.http.HttpFetch`` ...) and is
imported by its full path, so a pipeline loads only the modules it names.
"""
