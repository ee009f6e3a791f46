"""The examples in ``examples/policies`` reproduce their platforms' rules, through HTTP."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from openai_files import Policy
from openai_files.metadata.base import Quota
from openai_files.policy import DAY, FileTypes

from ..support import BATCH_LINE, load_module

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "policies"
MB = 1024 * 1024
BAD_SECOND_LINE = BATCH_LINE + b'{"custom_id": "request-2", "method": "GET"}\n'


def load_example(name: str) -> ModuleType:
    return load_module(EXAMPLES / f"{name}.py")


EXAMPLES_BY_NAME = {
    name: load_example(name)
    for name in ("openai", "xerotier", "soft_delete_platform", "aqueduct", "xai")
}
openai_example, xerotier, soft_delete_platform, aqueduct, xai = EXAMPLES_BY_NAME.values()


def build(module: ModuleType, data_dir: Path, policy: Policy | None = None) -> Starlette:
    """The example's app without its sweeper: these apps live for milliseconds, and stopping a
    sweep in the middle of a SQLite query leaves the connection's close pending forever."""
    app: Starlette = module.build_app(data_dir, policy or module.POLICY, sweep_interval=None)
    return app


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[None]:
    """The app's lifespan, which closes its service at the end."""
    async with app.router.lifespan_context(app):
        yield


def client(app: Starlette, key: str, prefix: str = "/v1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=f"http://files.test{prefix}",
        headers={"Authorization": f"Bearer {key}"},
    )


@asynccontextmanager
async def serving(
    module: ModuleType, data_dir: Path, policy: Policy | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the example's app, as the owner of the example's first API key."""
    app = build(module, data_dir, policy)
    async with running(app), client(app, next(iter(module.API_KEYS))) as files:
        yield files


async def upload(
    files: httpx.AsyncClient,
    filename: str,
    content: bytes,
    purpose: str,
    media_type: str = "application/octet-stream",
) -> httpx.Response:
    return await files.post(
        "/files", data={"purpose": purpose}, files={"file": (filename, content, media_type)}
    )


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    detail: dict[str, object] = response.json()["error"]
    return detail


# -- every example ------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLES_BY_NAME)
@pytest.mark.parametrize("prefix", ["/v1", ""])
async def test_every_example_serves_a_batch_file_from_upload_to_delete(
    name: str, prefix: str, tmp_path: Path
) -> None:
    module = EXAMPLES_BY_NAME[name]
    app = build(module, tmp_path)
    async with running(app), client(app, next(iter(module.API_KEYS)), prefix) as files:
        file = created(await upload(files, "requests.jsonl", BATCH_LINE, "batch"))
        assert (await files.get(f"/files/{file['id']}/content")).content == BATCH_LINE
        listed = (await files.get("/files")).json()["data"]
        assert [f["id"] for f in listed] == [file["id"]]
        assert (await files.delete(f"/files/{file['id']}")).json()["deleted"] is True


async def test_every_example_refuses_requests_without_its_api_key(tmp_path: Path) -> None:
    for name, module in EXAMPLES_BY_NAME.items():
        app = build(module, tmp_path / name)
        async with running(app), client(app, "sk-wrong") as files:
            assert error(await files.get("/files"), 401)["code"] == "invalid_api_key"


def test_the_docs_show_the_policy_of_every_example() -> None:
    docs = (ROOT / "docs" / "policy.md").read_text()
    shown = re.findall(r'^--8<-- "examples/policies/(\w+)\.py:policy"$', docs, re.MULTILINE)
    assert sorted(shown) == sorted(EXAMPLES_BY_NAME)
    for name in shown:
        source = (EXAMPLES / f"{name}.py").read_text()
        start, end = source.index("# --8<-- [start:policy]"), source.index("# --8<-- [end:policy]")
        assert "\nPOLICY = Policy(" in source[start:end], name


# -- seed 004, OpenAI ---------------------------------------------------------------------


def test_openai_example_is_the_default_policy_spelled_out() -> None:
    assert Policy() == openai_example.POLICY
    assert repr(openai_example.POLICY) == "Policy()"
    source = (EXAMPLES / "openai.py").read_text()
    missing = [f.name for f in dataclasses.fields(Policy) if f"    {f.name}=" not in source]
    assert missing == []


async def test_openai_batch_files_expire_after_30_days_and_assistants_files_never(
    tmp_path: Path,
) -> None:
    async with serving(openai_example, tmp_path) as files:
        batch = created(await upload(files, "requests.jsonl", BATCH_LINE, "batch"))
        notes = created(await upload(files, "notes.txt", b"hello", "assistants"))
    assert batch["expires_at"] == batch["created_at"] + 30 * DAY
    assert notes["expires_at"] is None


async def test_openai_refuses_a_batch_file_with_a_bad_line(tmp_path: Path) -> None:
    async with serving(openai_example, tmp_path) as files:
        refused = error(await upload(files, "requests.jsonl", BAD_SECOND_LINE, "batch"), 400)
        assert refused["code"] == "invalid_file"
        assert "Line 2" in str(refused["message"])
        assert (await files.get("/files")).json()["data"] == []


# -- seed 000, Xerotier -------------------------------------------------------------------


async def test_xerotier_validates_a_batch_file_when_a_batch_first_uses_it(
    tmp_path: Path,
) -> None:
    app = build(xerotier, tmp_path)
    project = xerotier.API_KEYS["xero_local"]
    async with running(app), client(app, "xero_local") as files:
        bad = created(await upload(files, "requests.jsonl", BAD_SECOND_LINE, "batch"))
        good = created(await upload(files, "requests.jsonl", BATCH_LINE, "batch"))
        assert bad["status"] == good["status"] == "uploaded"
        checked = await xerotier.start_batch(app.state.service, project, bad["id"], "batch_1")
        passed = await xerotier.start_batch(app.state.service, project, good["id"], "batch_2")
        retrieved = (await files.get(f"/files/{bad['id']}")).json()
    assert checked.status == retrieved["status"] == "error"
    assert str(checked.status_details).startswith("Line 2")
    assert retrieved["status_details"] == checked.status_details
    assert (passed.status, passed.status_details) == ("processed", None)


async def test_xerotier_refuses_a_vision_file_over_20_mb_with_400(tmp_path: Path) -> None:
    async with serving(xerotier, tmp_path) as files:
        too_large = await upload(files, "photo.png", bytes(20 * MB + 1), "vision", "image/png")
        assert error(too_large, 400)["code"] == "file_too_large"
        assert (await files.get("/files")).json()["data"] == []


async def test_xerotier_accepts_only_images_for_vision_and_jsonl_for_fine_tune(
    tmp_path: Path,
) -> None:
    async with serving(xerotier, tmp_path) as files:
        created(await upload(files, "photo.png", b"\x89PNG", "vision", "image/png"))
        document = await upload(files, "report.pdf", b"%PDF", "vision", "application/pdf")
        assert error(document, 400)["code"] == "unsupported_file_type"
        table = await upload(files, "examples.csv", b"a,b\n", "fine-tune", "text/csv")
        assert error(table, 400)["code"] == "unsupported_file_type"


async def test_xerotier_files_of_every_purpose_expire_30_days_after_creation(
    tmp_path: Path,
) -> None:
    uploads = [
        ("requests.jsonl", BATCH_LINE, "batch"),
        ("notes.txt", b"hello", "assistants"),
        ("photo.png", b"\x89PNG", "vision"),
        ("data.bin", b"\x00\x01", "user_data"),
        ("train.jsonl", b'{"messages": []}\n', "fine-tune"),
    ]
    async with serving(xerotier, tmp_path) as files:
        for filename, content, purpose in uploads:
            file = created(await upload(files, filename, content, purpose))
            assert file["expires_at"] == file["created_at"] + 30 * DAY


async def test_xerotier_serves_jsonl_as_application_jsonl_and_the_rest_as_bytes(
    tmp_path: Path,
) -> None:
    async with serving(xerotier, tmp_path) as files:
        batch = created(await upload(files, "in.jsonl", BATCH_LINE, "batch"))
        notes = created(await upload(files, "notes.txt", b"hi", "assistants", "text/plain"))
        jsonl = await files.get(f"/files/{batch['id']}/content")
        text = await files.get(f"/files/{notes['id']}/content")
        head = await files.head(f"/files/{batch['id']}/content")
    assert (jsonl.headers["content-type"], jsonl.content) == ("application/jsonl", BATCH_LINE)
    assert head.headers["content-type"] == "application/jsonl"
    assert text.headers["content-type"] == "application/octet-stream"


async def test_aqueduct_answers_a_file_over_its_limit_with_400(tmp_path: Path) -> None:
    policy = dataclasses.replace(aqueduct.POLICY, max_file_size=10)
    async with serving(aqueduct, tmp_path, policy) as files:
        too_large = await upload(files, "in.jsonl", BATCH_LINE, "batch")
        assert error(too_large, 400)["code"] == "file_too_large"
        assert (await files.get("/files")).json()["data"] == []


def test_file_too_large_status_is_413_or_400() -> None:
    assert Policy().file_too_large_status == 413
    with pytest.raises(ValueError, match="file_too_large_status must be 413 or 400"):
        Policy(file_too_large_status=422)


def test_download_media_types_win_over_keep_media_type_and_are_checked() -> None:
    policy = Policy(keep_media_type=True, download_media_types={".jsonl": "application/jsonl"})
    assert policy.download_media_type("IN.JSONL", "text/plain") == "application/jsonl"
    assert policy.download_media_type("a.txt", "text/plain") == "text/plain"
    assert Policy().download_media_type("a.txt", "text/plain") == "application/octet-stream"
    with pytest.raises(ValueError, match=r"lowercase extensions such as '\.jsonl'"):
        Policy(download_media_types={"jsonl": "application/jsonl"})
    with pytest.raises(ValueError, match="not a media type"):
        Policy(download_media_types={".jsonl": "jsonl"})


async def test_xerotier_refuses_the_evals_purpose(tmp_path: Path) -> None:
    async with serving(xerotier, tmp_path) as files:
        refused = error(await upload(files, "eval.jsonl", BATCH_LINE, "evals"), 400)
    assert refused["param"] == "purpose"


async def test_xerotier_refuses_to_delete_a_file_while_a_batch_holds_it(tmp_path: Path) -> None:
    app = build(xerotier, tmp_path)
    project = xerotier.API_KEYS["xero_local"]
    async with running(app), client(app, "xero_local") as files:
        file_id = created(await upload(files, "requests.jsonl", BATCH_LINE, "batch"))["id"]
        await xerotier.start_batch(app.state.service, project, file_id, "batch_1")
        refused = await files.delete(f"/files/{file_id}")
        assert error(refused, 409)["code"] == "conflict"
        assert refused.headers["x-should-retry"] == "false"
        await xerotier.finish_batch(app.state.service, project, file_id, "batch_1")
        assert (await files.delete(f"/files/{file_id}")).status_code == 200


# -- seed 001, soft delete ----------------------------------------------------------------


async def test_soft_deleted_file_is_retrievable_as_deleted_but_not_listed_or_downloadable(
    tmp_path: Path,
) -> None:
    async with serving(soft_delete_platform, tmp_path) as files:
        kept = created(await upload(files, "kept.csv", b"a,b\n", "training", "text/csv"))
        gone = created(await upload(files, "gone.csv", b"a,b\n", "training", "text/csv"))
        assert (await files.delete(f"/files/{gone['id']}")).json()["deleted"] is True
        retrieved = (await files.get(f"/files/{gone['id']}")).json()
        assert (retrieved["id"], retrieved["status"]) == (gone["id"], "deleted")
        listed = (await files.get("/files")).json()["data"]
        assert [f["id"] for f in listed] == [kept["id"]]
        content = await files.get(f"/files/{gone['id']}/content")
        assert error(content, 404)["code"] == "file_not_found"
        assert (await files.delete(f"/files/{gone['id']}")).status_code == 404


async def test_soft_delete_platform_accepts_any_file_and_reports_bad_jsonl_in_its_status(
    tmp_path: Path,
) -> None:
    async with serving(soft_delete_platform, tmp_path) as files:
        binary = created(await upload(files, "weights.bin", b"\x00\xff", "evaluation"))
        bad = created(await upload(files, "requests.csv", b"a,b\n", "batch", "text/csv"))
    assert (binary["status"], binary["expires_at"]) == ("processed", None)
    assert bad["status"] == "error"
    assert str(bad["status_details"]).startswith("Line 1")


async def test_soft_delete_platform_ids_are_uuids_and_page_by_cursor(tmp_path: Path) -> None:
    async with serving(soft_delete_platform, tmp_path) as files:
        made = [created(await upload(files, f"{n}.bin", b"1", "dataset"))["id"] for n in range(5)]
        seen, after = [], None
        while True:
            params: dict[str, str | int] = {"limit": 2, "order": "asc"}
            if after:
                params["after"] = after
            page = (await files.get("/files", params=params)).json()
            seen += [f["id"] for f in page["data"]]
            if not page["has_more"]:
                break
            after = page["last_id"]
        one = (await files.get(f"/files/{made[2]}")).json()
    assert [uuid.UUID(file_id).version for file_id in made] == [7] * 5
    assert seen == made
    assert one["id"] == made[2]


async def test_soft_delete_platform_pages_by_offset_and_counts_the_total(tmp_path: Path) -> None:
    async with serving(soft_delete_platform, tmp_path) as files:
        made = [created(await upload(files, f"{n}.bin", b"1", "dataset"))["id"] for n in range(7)]
        await upload(files, "other.bin", b"1", "training")
        pages = [
            (await files.get("/files", params={"purpose": "dataset", "limit": 3, "offset": at}))
            for at in (0, 3, 6, 9)
        ]
        bodies = [page.json() for page in pages]
        both = await files.get("/files", params={"offset": 1, "after": made[0]})
        negative = await files.get("/files", params={"offset": -1})
    assert [body["total"] for body in bodies] == [7, 7, 7, 7]
    assert [f["id"] for body in bodies for f in body["data"]] == made[::-1]
    assert [body["has_more"] for body in bodies] == [True, True, False, False]
    assert error(both, 400)["param"] == "offset"
    assert error(negative, 400)["message"] == "offset must be 0 or more; got -1."


async def test_a_policy_without_list_offset_ignores_offset_and_sends_no_total(
    tmp_path: Path,
) -> None:
    async with serving(openai_example, tmp_path) as files:
        first = created(await upload(files, "a.txt", b"a", "assistants"))
        page = (await files.get("/files", params={"offset": 5})).json()
    assert [f["id"] for f in page["data"]] == [first["id"]]
    assert "total" not in page


@pytest.mark.parametrize("purpose", ["training", "eval:v2", "My_Dataset-1.0", "x" * 64])
async def test_soft_delete_platform_accepts_any_well_formed_purpose(
    purpose: str, tmp_path: Path
) -> None:
    async with serving(soft_delete_platform, tmp_path) as files:
        file = created(await upload(files, "data.bin", b"1", purpose))
        listed = (await files.get("/files", params={"purpose": purpose})).json()["data"]
    assert file["purpose"] == purpose
    assert [f["id"] for f in listed] == [file["id"]]


@pytest.mark.parametrize("purpose", ["../etc", "x" * 65, "-lead", "a b", "caf\u00e9", "a\nb"])
async def test_any_purpose_still_refuses_a_malformed_one(purpose: str, tmp_path: Path) -> None:
    async with serving(soft_delete_platform, tmp_path) as files:
        refused = error(await upload(files, "data.bin", b"1", purpose), 400)
        assert refused["param"] == "purpose"
        assert "is not a valid purpose: use 1 to 64 letters" in str(refused["message"])
        assert (await files.get("/files")).json()["data"] == []


async def test_soft_delete_platform_lists_100_files_by_default_and_at_most_1000(
    tmp_path: Path,
) -> None:
    async with serving(soft_delete_platform, tmp_path) as files:
        for number in range(101):
            created(await upload(files, f"{number}.txt", b"x", "user_data"))
        page = (await files.get("/files")).json()
        assert (len(page["data"]), page["has_more"]) == (100, True)
        assert len((await files.get("/files", params={"limit": 1000})).json()["data"]) == 101
        too_many = await files.get("/files", params={"limit": 1001})
        assert error(too_many, 400)["param"] == "limit"


# -- seed 002, Aqueduct -------------------------------------------------------------------


async def test_aqueduct_refuses_purposes_other_than_batch_listing_the_valid_one(
    tmp_path: Path,
) -> None:
    async with serving(aqueduct, tmp_path) as files:
        refused = error(await upload(files, "notes.jsonl", BATCH_LINE, "assistants"), 400)
    assert refused["param"] == "purpose"
    assert "['batch']" in str(refused["message"])


async def test_aqueduct_refuses_files_that_are_not_jsonl(tmp_path: Path) -> None:
    async with serving(aqueduct, tmp_path) as files:
        refused = error(await upload(files, "requests.txt", BATCH_LINE, "batch"), 400)
    assert refused["code"] == "unsupported_file_type"


async def test_aqueduct_refuses_a_batch_file_with_a_bad_line(tmp_path: Path) -> None:
    async with serving(aqueduct, tmp_path) as files:
        refused = error(await upload(files, "requests.jsonl", BAD_SECOND_LINE, "batch"), 400)
    assert refused["code"] == "invalid_file"


async def test_aqueduct_batch_files_expire_after_7_days(tmp_path: Path) -> None:
    async with serving(aqueduct, tmp_path) as files:
        file = created(await upload(files, "requests.jsonl", BATCH_LINE, "batch"))
    assert file["expires_at"] == file["created_at"] + 7 * DAY


async def test_aqueduct_quota_counts_each_users_files_separately(tmp_path: Path) -> None:
    app = build(aqueduct, tmp_path, dataclasses.replace(aqueduct.POLICY, quota=Quota(max_files=1)))
    async with running(app), client(app, "sk-alice") as alice, client(app, "sk-bob") as bob:
        created(await upload(alice, "requests.jsonl", BATCH_LINE, "batch"))
        second = await upload(alice, "requests.jsonl", BATCH_LINE, "batch")
        assert error(second, 400)["code"] == "quota_exceeded"
        created(await upload(bob, "requests.jsonl", BATCH_LINE, "batch"))


# -- seed 003, xAI ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "media_type"),
    [
        ("report.pdf", "application/pdf"),
        ("notes.md", "application/octet-stream"),
        ("table", "text/csv"),
        ("letter.docx", "application/octet-stream"),
    ],
)
async def test_xai_accepts_documents_by_extension_or_media_type(
    filename: str, media_type: str, tmp_path: Path
) -> None:
    async with serving(xai, tmp_path) as files:
        file = created(await upload(files, filename, b"content", "assistants", media_type))
    assert (file["status"], file["expires_at"]) == ("processed", None)


@pytest.mark.parametrize(
    ("filename", "media_type"),
    [("setup.exe", "application/octet-stream"), ("photo.png", "image/png")],
)
async def test_xai_refuses_other_files(filename: str, media_type: str, tmp_path: Path) -> None:
    async with serving(xai, tmp_path) as files:
        refused = error(await upload(files, filename, b"MZ", "assistants", media_type), 400)
    assert refused["code"] == "unsupported_file_type"


async def test_xai_lists_20_files_by_default(tmp_path: Path) -> None:
    async with serving(xai, tmp_path) as files:
        for number in range(21):
            created(await upload(files, f"{number}.txt", b"x", "assistants"))
        page = (await files.get("/files")).json()
        assert (len(page["data"]), page["has_more"]) == (20, True)
        rest = (await files.get("/files", params={"after": page["last_id"]})).json()
        assert (len(rest["data"]), rest["has_more"]) == (1, False)


@pytest.mark.parametrize("name", ["aqueduct", "soft_delete_platform", "xai", "xerotier"])
async def test_platforms_without_an_uploads_api_do_not_serve_one(name: str, tmp_path: Path) -> None:
    declared = {"filename": "a.jsonl", "purpose": "batch", "mime_type": "text/plain", "bytes": 1}
    async with serving(EXAMPLES_BY_NAME[name], tmp_path) as files:
        refused = await files.post("/uploads", json=declared)
        assert error(refused, 404)["message"] == "Unknown path: /v1/uploads."
        assert (await files.get("/files")).is_success


async def test_openais_policy_serves_the_uploads_api(tmp_path: Path) -> None:
    declared = {"filename": "a.jsonl", "purpose": "batch", "mime_type": "text/plain", "bytes": 1}
    async with serving(EXAMPLES_BY_NAME["openai"], tmp_path) as files:
        assert (await files.post("/uploads", json=declared)).is_success


async def test_xai_refuses_files_beyond_the_accounts_quota(tmp_path: Path) -> None:
    policy = dataclasses.replace(xai.POLICY, quota=Quota(max_files=2))
    async with serving(xai, tmp_path, policy) as files:
        for number in range(2):
            created(await upload(files, f"{number}.txt", b"x", "assistants"))
        refused = error(await upload(files, "2.txt", b"x", "assistants"), 400)
    assert refused["code"] == "quota_exceeded"


def test_file_types_match_either_list_by_default_or_both_when_asked() -> None:
    either = FileTypes(extensions=(".pdf",), media_types=("application/pdf",))
    both = FileTypes(extensions=(".pdf",), media_types=("application/pdf",), match="both")
    for types, cases in (
        (either, [("a.pdf", "text/plain", True), ("a.exe", "application/pdf", True)]),
        (both, [("a.pdf", "text/plain", False), ("a.exe", "application/pdf", False)]),
    ):
        for filename, media_type, allowed in cases:
            assert types.allows(filename, media_type) is allowed
        assert types.allows("A.PDF", "Application/PDF; charset=binary")
        assert not types.allows("a.exe", "application/octet-stream")
    assert both.describe() == ".pdf declared as application/pdf"
    with pytest.raises(ValueError, match="match must be 'either' or 'both'"):
        FileTypes(match="any")  # type: ignore[arg-type]


def test_a_media_type_ending_in_a_star_accepts_every_subtype() -> None:
    images = FileTypes(media_types=("image/*",))
    assert images.allows("photo", "image/png")
    assert images.allows("photo", "IMAGE/WEBP")
    assert not images.allows("photo", "image/")
    assert not images.allows("photo", "imagery/png")
    assert not images.allows("photo.png", None)
