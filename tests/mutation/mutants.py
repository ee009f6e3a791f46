"""Curated mutants of the modules that carry the promises, and whether the tests kill them.

Run on purpose, not by ``make test`` (it runs the targeted tests once per mutant, minutes):

    .venv/bin/python tests/mutation/mutants.py              # every mutant
    .venv/bin/python tests/mutation/mutants.py has-more-ge  # the ones named

Each mutant is one small change to one line of ``src/`` (a boundary moved by one, a condition
dropped, a column left out of an ``ORDER BY``): the kind of slip a review can miss and a test
must not. The source and the tests are copied once to a scratch directory; each mutant is
applied there (its text must occur exactly once in its file), the tests named for it run
against the copy (``PYTHONPATH`` puts the copy's ``src`` first), and the file is restored. A
mutant is *killed* when a test fails, *survived* when they all pass. The report lists each,
and ``--json`` writes it to a file; the exit status is 1 when a mutant survived that is not
declared ``equivalent`` (a change no client can observe, with the reason why).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONFORMANCE = "tests/backends/test_metadata_conformance.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    keyword: str | None = None
    equivalent: str | None = None
    """Why no test can kill it, for a mutant that changes nothing a client can observe."""


def mutant(
    name: str,
    file: str,
    old: str,
    new: str,
    *tests: str,
    keyword: str | None = None,
    equivalent: str | None = None,
) -> Mutant:
    return Mutant(name, f"src/openai_files/{file}", old, new, tests, keyword, equivalent)


MUTANTS = [
    # -- idempotency keys: the window, and a stale key row at commit ---------------------------
    mutant(
        "window-60s",
        "_core.py",
        "IDEMPOTENCY_WINDOW = DAY",
        "IDEMPOTENCY_WINDOW = 60",
        "tests/library/test_idempotency_window.py",
    ),
    mutant(
        "window-0",
        "_core.py",
        "IDEMPOTENCY_WINDOW = DAY",
        "IDEMPOTENCY_WINDOW = 0",
        "tests/library/test_idempotency_window.py",
    ),
    mutant(
        "service-lookup-window-60s",
        "service.py",
        "since = self._core.now() - IDEMPOTENCY_WINDOW",
        "since = self._core.now() - 60",
        "tests/library/test_idempotency_window.py",
    ),
    mutant(
        "sql-stale-key-kept",
        "metadata/_sql_files.py",
        "or_(keys.c.created_at < key_since, ~live_file.exists()),",
        "~live_file.exists(),",
        CONFORMANCE,
        "tests/library/test_idempotency_window.py",
        keyword="SQLite or sqlite",
    ),
    mutant(
        "sql-key-since-exclusive",
        "metadata/_sql_statements.py",
        'keys.c.created_at >= bindparam("since", type_=BigInteger)',
        'keys.c.created_at > bindparam("since", type_=BigInteger)',
        CONFORMANCE,
        keyword="SQLite and key",
    ),
    mutant(
        "memory-key-since-exclusive",
        "metadata/memory.py",
        "found[1] < since",
        "found[1] <= since",
        CONFORMANCE,
        keyword="Memory and key",
    ),
    # -- listing: has_more, order, cursors ------------------------------------------------------
    mutant(
        "has-more-ge",
        "_listing.py",
        "more = len(records) > wanted",
        "more = len(records) >= wanted",
        "tests/library/test_list_has_more.py",
    ),
    mutant(
        "sql-order-asc-without-id",
        "metadata/_sql_statements.py",
        "query.order_by(files.c.created_us.asc(), files.c.id.asc())",
        "query.order_by(files.c.created_us.asc())",
        "tests/backends/test_sql_list_order.py",
    ),
    mutant(
        "sql-order-desc-without-id",
        "metadata/_sql_statements.py",
        "query.order_by(files.c.created_us.desc(), files.c.id.desc())",
        "query.order_by(files.c.created_us.desc())",
        "tests/backends/test_sql_list_order.py",
    ),
    mutant(
        "sql-offset-ignored",
        "metadata/_sql_statements.py",
        'query = query.offset(bindparam("offset", type_=Integer))',
        "query = query",
        "tests/backends/test_sql_list_order.py",
    ),
    mutant(
        "sql-cursor-repeats-tie",
        "metadata/_sql_statements.py",
        "or_(column_time > created_us, column_id > file_id)",
        "or_(column_time > created_us, column_id >= file_id)",
        CONFORMANCE,
        keyword="SQLite",
    ),
    mutant(
        "memory-cursor-bisect-left",
        "metadata/memory.py",
        "bisect.bisect_right(cursors, after)",
        "bisect.bisect_left(cursors, after)",
        CONFORMANCE,
        keyword="Memory",
    ),
    # -- visibility and quotas in the stores ---------------------------------------------------
    mutant(
        "sql-expiry-inclusive",
        "metadata/_sql_statements.py",
        "files.c.expires_at > now",
        "files.c.expires_at >= now",
        CONFORMANCE,
        keyword="SQLite",
    ),
    mutant(
        "record-expiry-exclusive",
        "metadata/_records.py",
        "now >= self.expires_at",
        "now > self.expires_at",
        CONFORMANCE,
        keyword="Memory",
    ),
    mutant(
        "record-hold-ignored",
        "metadata/_records.py",
        'self.state == "active" and (self.hold_count > 0 or not self.expired_at(now))',
        'self.state == "active" and not self.expired_at(now)',
        CONFORMANCE,
        keyword="Memory",
    ),
    mutant(
        "sql-file-quota-off-by-one",
        "metadata/_sql_statements.py",
        'usage.c.files + bindparam("d_files", type_=BigInteger) <= files_cap',
        'usage.c.files + bindparam("d_files", type_=BigInteger) < files_cap',
        CONFORMANCE,
        keyword="SQLite",
    ),
    mutant(
        "sql-byte-quota-off-by-one",
        "metadata/_sql_statements.py",
        'usage.c.bytes + bindparam("d_bytes", type_=BigInteger) <= bytes_cap',
        'usage.c.bytes + bindparam("d_bytes", type_=BigInteger) < bytes_cap',
        CONFORMANCE,
        keyword="SQLite",
    ),
    mutant(
        "sql-commit-any-reserved",
        "metadata/_sql_statements.py",
        'files.c.bytes == bindparam("reserved", type_=BigInteger),',
        "",
        CONFORMANCE,
        "tests/library/test_durability.py",
        keyword="SQLite or durab",
        equivalent="the guard re-checks, in the commit's own transaction, the bytes it has just "
        "read there; a pending row's bytes change only by its own upload's reservations, which "
        "all end before that upload commits, so no sequence of requests makes them differ",
    ),
    # -- the sweeper's claims --------------------------------------------------------------------
    mutant(
        "sql-claim-hold-ignored",
        "metadata/_sql_statements.py",
        '.where(seen.in_(bindparam("b_seen", expanding=True)), files.c.hold_count == 0)',
        '.where(seen.in_(bindparam("b_seen", expanding=True)))',
        "tests/backends/test_sql_sweep_claims.py",
        keyword="sqlite",
    ),
    mutant(
        "sql-claim-locked-unchecked",
        "metadata/_sql_deletes.py",
        "if current.get(record.id) == (record.state, record.changed_at, 0)",
        "if record.id in current",
        "tests/backends/test_sql_sweep_claims.py",
        keyword="postgresql or mariadb",
    ),
    # -- the size of an upload -------------------------------------------------------------------
    mutant(
        "stream-cutoff-plus-one",
        "_pending_upload.py",
        "if total > limit:",
        "if total > limit + 1:",
        "tests/library/test_streamed_size_limit.py",
        "tests/http/test_upload_cutoff.py",
    ),
    mutant(
        "stream-cutoff-at-limit",
        "_pending_upload.py",
        "if total > limit:",
        "if total >= limit:",
        "tests/library/test_streamed_size_limit.py",
        "tests/http/test_upload_cutoff.py",
    ),
    mutant(
        "declared-length-at-limit",
        "http/_files_api.py",
        "declared is not None and declared > max_body",
        "declared is not None and declared >= max_body",
        "tests/http/test_upload_limits.py",
        "tests/http/test_upload_cutoff.py",
        "tests/http/test_file_too_large_status.py",
    ),
    # -- multipart -------------------------------------------------------------------------------
    mutant(
        "boundary-71-characters",
        "http/_multipart.py",
        "if len(boundary) > 70:",
        "if len(boundary) > 71:",
        "tests/http/test_multipart.py",
        "tests/http/test_hostile_corpus.py",
        keyword="boundary",
    ),
    mutant(
        "multipart-body-limit-inclusive",
        "http/_multipart.py",
        "if self._received > self._max_body:",
        "if self._received >= self._max_body:",
        "tests/http/test_multipart.py",
        "tests/http/test_upload_cutoff.py",
    ),
    mutant(
        "multipart-field-count-inclusive",
        "http/_multipart.py",
        "if self._parts > self._limits.max_fields:",
        "if self._parts >= self._limits.max_fields:",
        "tests/http/test_multipart.py",
        "tests/http/test_hostile_input.py",
    ),
    mutant(
        "multipart-field-size-inclusive",
        "http/_multipart.py",
        "if len(buffer) > self._limits.max_field_size:",
        "if len(buffer) >= self._limits.max_field_size:",
        "tests/http/test_multipart.py",
        "tests/http/test_hostile_input.py",
    ),
    # -- ranges and conditional requests ---------------------------------------------------------
    mutant(
        "range-start-at-size-satisfiable",
        "http/_ranges.py",
        "if start >= size:",
        "if start > size:",
        "tests/http/test_ranges.py",
    ),
    mutant(
        "range-suffix-one-more",
        "http/_ranges.py",
        "return ByteRange(max(0, size - suffix), size - 1)",
        "return ByteRange(max(0, size - suffix - 1), size - 1)",
        "tests/http/test_ranges.py",
    ),
    mutant(
        "range-end-past-file",
        "http/_ranges.py",
        "return ByteRange(start, min(end, size - 1))",
        "return ByteRange(start, min(end, size))",
        "tests/http/test_ranges.py",
    ),
    mutant(
        "if-range-weak-matches",
        "http/_ranges.py",
        "return value == etag  # strong comparison: a weak tag never matches",
        'return value.removeprefix("W/") == etag',
        "tests/http/test_ranges.py",
    ),
    mutant(
        "if-modified-since-strict",
        "http/_ranges.py",
        "return since is not None and last_modified <= since",
        "return since is not None and last_modified < since",
        "tests/http/test_ranges.py",
    ),
    # -- auth ----------------------------------------------------------------------------------
    mutant(
        "auth-two-headers-accepted",
        "http/auth.py",
        "if len(sent) > 1:",
        "if len(sent) > 2:",
        "tests/http/test_security.py",
        "tests/http/test_auth_headers.py",
    ),
    mutant(
        "auth-scheme-case-sensitive",
        "http/auth.py",
        'if scheme.lower() == "bearer"',
        'if scheme == "Bearer"',
        "tests/http/test_security.py",
        "tests/http/test_auth_headers.py",
    ),
    mutant(
        "auth-token-unstripped",
        "http/auth.py",
        'presented = token.strip().encode("latin-1")',
        'presented = token.encode("latin-1")',
        "tests/http/test_security.py",
        "tests/http/test_auth_headers.py",
    ),
    mutant(
        "auth-last-match-wins",
        "http/auth.py",
        "if hmac.compare_digest(presented, key) and found is None:",
        "if hmac.compare_digest(presented, key):",
        "tests/http/test_security.py",
        "tests/http/test_auth_headers.py",
        equivalent="keys are the keys of a mapping, so at most one matches: which match wins "
        "cannot differ (the loop goes on past a match only to take constant time)",
    ),
]


@dataclass
class Outcome:
    name: str
    killed: bool
    seconds: float
    equivalent: str | None
    failed: str


def scratch_copy(into: Path) -> None:
    for part in ("src", "tests"):
        shutil.copytree(ROOT / part, into / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", into / "pyproject.toml")


def run(copy: Path, case: Mutant, workers: int) -> Outcome:
    path = copy / case.file
    original = path.read_text()
    if original.count(case.old) != 1:
        raise SystemExit(
            f"{case.name}: the text to change occurs {original.count(case.old)} "
            f"times in {case.file}, not once"
        )
    path.write_text(original.replace(case.old, case.new))
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-n",
               str(workers), *case.tests]  # fmt: skip
    if case.keyword:
        command += ["-k", case.keyword]
    env = {**os.environ, "PYTHONPATH": str(copy / "src")}
    started = time.monotonic()
    try:
        result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)
    finally:
        path.write_text(original)
    failed = [line for line in result.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    # 0: every test passed; 1 (or 2, xdist stopping at the first failure): a test failed.
    if result.returncode not in (0, 1, 2) or (result.returncode and not failed):
        raise SystemExit(f"{case.name}: pytest exited {result.returncode}\n{result.stdout}")
    return Outcome(
        case.name,
        bool(failed),
        round(time.monotonic() - started, 1),
        case.equivalent,
        failed[0].partition(" ")[2] if failed else "",
    )


def check_copy_is_imported(copy: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(copy / "src")}
    shown = subprocess.run(
        [sys.executable, "-c", "import openai_files; print(openai_files.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not shown.startswith(str(copy)):
        raise SystemExit(f"the tests would import {shown}, not the mutated copy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--json", type=Path, help="write the outcomes to this file")
    parser.add_argument("-n", "--workers", type=int, default=2, help="pytest-xdist workers")
    options = parser.parse_args()
    chosen = [m for m in MUTANTS if not options.names or m.name in options.names]
    unknown = set(options.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"no such mutant: {', '.join(sorted(unknown))}")
    if options.list:
        for case in chosen:
            print(f"{case.name:36} {case.file}")
        return 0
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
        copy = Path(scratch)
        scratch_copy(copy)
        check_copy_is_imported(copy)
        for case in chosen:
            outcome = run(copy, case, options.workers)
            verdict = "killed" if outcome.killed else "SURVIVED"
            if not outcome.killed and outcome.equivalent:
                verdict = "equivalent"
            print(f"{verdict:10} {case.name:36} {outcome.seconds:6.1f} s  {outcome.failed}")
            outcomes.append(outcome)
    killed = sum(outcome.killed for outcome in outcomes)
    equivalent = sum(not o.killed and o.equivalent is not None for o in outcomes)
    survived = [o.name for o in outcomes if not o.killed and o.equivalent is None]
    scored = len(outcomes) - equivalent
    print(f"\n{killed} of {scored} killed ({equivalent} equivalent left out)", end="")
    print(f"; survived: {', '.join(survived)}" if survived else "")
    if options.json:
        options.json.write_text(
            json.dumps([o.__dict__ for o in outcomes], indent=2, ensure_ascii=False) + "\n"
        )
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
