"""What every benchmark needs, by concern.

- `harness.servers`: the servers measured, each a subprocess on a free loopback port under
  uvicorn with its defaults: ours through ``openai-files serve``, the baselines of
  ``baselines.py``, so both sides pay for the same HTTP stack, with the same malloc settings
  (`PINNED`); and moto's S3 server with ours in front of it (the replicated shape).
- `harness.stores`: what the servers store in, seen from the side: the S3 server's objects, and
  PostgreSQL, which must already run (`POSTGRES_URL`); each benchmark's tables get a unique
  prefix and are dropped afterwards.
- `harness.clients`: the load: curl as the client, which streams files from disk and reports its
  own timings (a 256 MiB upload costs it about a quarter of the CPU time that the fastest server
  spends), and the files and request bodies it sends.
- `harness.measure`: what is measured of a server process (CPU, page faults, RSS, descriptors)
  and how runs are ordered so that the machine's drift is shared fairly.
- `harness.report`: figures, targets, and how they are printed and saved.
- `harness.disk`: the filesystem the benchmarks write to, recorded with the figures, and the
  warning printed where it makes creating files cost more after mass deletions.
"""

from __future__ import annotations

from pathlib import Path

MiB = 1024 * 1024
BENCHMARKS_DIR = Path(__file__).resolve().parents[1]
"""The ``benchmarks/`` folder, where ``baselines.py`` is and ``results/`` goes."""
