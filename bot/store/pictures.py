"""Pictures: each job's input and result, lossless bytes kept in the database with the job."""

from __future__ import annotations

from collections.abc import Iterable

from bot.store.base import StoreBase, in_list


class PicturesStore(StoreBase):
    """Reads and rewrites of stored pictures (they are written with their job: add_job, finish_job)."""

    async def picture(self, job_id: str, kind: str) -> bytes | None:
        """A job's input ("input") or result ("result") picture: lossless bytes Pillow reads."""
        data = await self.db.fetch_value("SELECT data FROM pictures WHERE job_id = ? AND kind = ?", job_id, kind)
        return bytes(data) if data is not None else None

    async def pictures(self, job_ids: Iterable[str], kind: str) -> dict[str, bytes]:
        """The `kind` pictures of these jobs, by job id (a job without one is left out)."""
        ids = list(job_ids)
        if not ids:
            return {}
        rows = await self.db.fetch_all(
            f"SELECT job_id, data FROM pictures WHERE kind = ? AND job_id IN {in_list(ids)}", kind, *ids
        )
        return {row["job_id"]: bytes(row["data"]) for row in rows}

    async def job_pictures(self, job_id: str) -> dict[str, bytes]:
        """A job's pictures by kind ("input", "result"), in one read."""
        rows = await self.db.fetch_all("SELECT kind, data FROM pictures WHERE job_id = ?", job_id)
        return {row["kind"]: bytes(row["data"]) for row in rows}

    async def has_picture(self, job_id: str, kind: str) -> bool:
        return (
            await self.db.fetch_value("SELECT 1 FROM pictures WHERE job_id = ? AND kind = ?", job_id, kind) is not None
        )

    async def replace_picture(self, job_id: str, kind: str, data: bytes) -> None:
        await self.db.execute("UPDATE pictures SET data = ? WHERE job_id = ? AND kind = ?", data, job_id, kind)
