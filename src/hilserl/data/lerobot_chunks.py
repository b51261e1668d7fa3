"""LeRobot v3.0's chunked files, as the exporter writes them: tables and episode videos appended to the current
file until it would reach its size setting, then the next file (at most ``chunks_size`` files per chunk folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .lerobot_v3 import EPISODES_PATH, VIDEO_PATH
from .video import concat_videos

__all__ = ["ParquetFiles", "VideoFiles", "next_file", "write_episode_rows"]

_MB = 1024**2


def next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    """LeRobot's order of files: file-000 ... file-(chunks_size-1) in a chunk, then the next chunk."""
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


class VideoFiles:
    """The video files of one camera key: episodes appended back to back, a new file at the size setting."""

    def __init__(self, root: Path, key: str, limit_mb: float, chunks_size: int) -> None:
        self.root, self.key, self.limit, self.chunks_size = root, key, limit_mb * _MB, chunks_size
        self.chunk = self.file = 0
        self.pending: list[Path] = []
        self.pending_bytes = 0
        self.frames_in_file = 0
        self.files = 0

    def append(self, episode_video: Path, n_frames: int, fps: int) -> dict[str, Any]:
        size = episode_video.stat().st_size
        if self.pending and self.pending_bytes + size >= self.limit:
            self._flush()
            self.chunk, self.file = next_file(self.chunk, self.file, self.chunks_size)
            self.frames_in_file = 0
        start = self.frames_in_file
        self.pending.append(episode_video)
        self.pending_bytes += size
        self.frames_in_file += n_frames
        p = f"videos/{self.key}/"
        return {p + "chunk_index": self.chunk, p + "file_index": self.file,
                p + "from_timestamp": start / fps, p + "to_timestamp": (start + n_frames) / fps}

    def _flush(self) -> None:
        out = self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.chunk, file_index=self.file)
        concat_videos(self.pending, out)
        self.files += 1
        self.pending, self.pending_bytes = [], 0

    def close(self) -> None:
        if self.pending:
            self._flush()


class ParquetFiles:
    """Tables appended to chunked parquet files; a new file when the current would reach the size setting."""

    def __init__(self, root: Path, template: str, limit_mb: float, chunks_size: int) -> None:
        self.root, self.template, self.limit, self.chunks_size = root, template, limit_mb * _MB, chunks_size
        self.chunk = self.file = 0
        self.bytes = 0
        self.writer: pq.ParquetWriter | None = None
        self.files = 0

    def append(self, table: pa.Table) -> tuple[int, int]:
        if self.writer is not None and self.bytes + table.nbytes >= self.limit:
            self.writer.close()
            self.writer = None
            self.chunk, self.file = next_file(self.chunk, self.file, self.chunks_size)
        if self.writer is None:
            path = self.root / self.template.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            self.bytes = 0
            self.files += 1
        self.writer.write_table(table)
        self.bytes += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def write_episode_rows(root: Path, rows: list[dict[str, Any]], limit_mb: float, chunks_size: int) -> None:
    """meta/episodes files, split by the same size rule as the data files."""
    probe = pa.Table.from_pylist(rows)
    per_row = max(1.0, probe.nbytes / len(rows))
    chunk = file = 0
    used = 0.0
    for row in rows:
        if used > 0 and used + per_row >= limit_mb * _MB:
            chunk, file = next_file(chunk, file, chunks_size)
            used = 0.0
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = chunk, file
        used += per_row
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["meta/episodes/chunk_index"], row["meta/episodes/file_index"]), []).append(row)
    for (c, f), group in groups.items():
        path = root / EPISODES_PATH.format(chunk_index=c, file_index=f)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(group), path, compression="snappy")
