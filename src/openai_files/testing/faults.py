"""Backends that fail on command: `FaultyStorage` and `FaultyMetadataStore` wrap a real backend
and raise `BackendUnavailable` where a test asks them to, as a backend that is down would.

Each wrapper forwards every call to the backend it wraps, except the calls it is told to fail::

    storage = FaultyStorage(LocalStorage(root))
    metadata = FaultyMetadataStore(SQLMetadataStore(url))
    storage.fail_put_at_chunk = 3   # every put fails when its 3rd chunk arrives
    metadata.fail_commit = 1        # the next commit fails, later ones succeed
    metadata.down = True            # every call fails: an outage
    storage.heal()                  # every switch off again

A switch named ``fail_<operation>`` takes a `Trigger`: ``True`` fails every call until the
switch is turned off, an integer n fails the next n calls and then turns itself off. A failing
call normally has no effect on the backend; name the operation in ``lost_replies`` to have the
backend carry the call out first and only its answer lost, as when a database commits a
transaction but the connection breaks before the reply arrives.

For soak tests, `RandomFaults` fails calls at random with a given probability, from a seeded
`random.Random` so that a failing run can be replayed. Every fault raised is counted in
``injected``, by operation.
"""

from __future__ import annotations

from ._faulty_metadata import FaultyMetadataStore
from ._faulty_storage import FaultyStorage
from ._switchboard import RandomFaults, Trigger

__all__ = ["FaultyMetadataStore", "FaultyStorage", "RandomFaults", "Trigger"]
