"""The ``openai-files`` command line: ``serve`` (flags to backends, `Policy` and server) and the
client commands ``upload``, ``list``, ``get``, ``download`` and ``delete``.

The layer above the HTTP edge: ``serve`` builds a service with `openai_files.backends` and
serves it with `openai_files.http.create_app`; the client commands talk to any
OpenAI-compatible Files API through their own HTTP client, which knows nothing of argparse.
Only `main` (the console script) and `build_parser` are public.
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
