"""Files a user uploads to the web app: copied to disk in chunks, checked, and read exactly as `dojo train` would.

An upload lives in RUNS_DIR/.uploads/<id>/ (the id is random; the original name is kept for messages). A zip
of image folders is unpacked there with limits on the number of files and their total size, and names that
would escape the folder (absolute paths, '..') are refused, not rewritten. Nothing is unpickled or executed.
"""
from __future__ import annotations

import re
import secrets
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import DataError, NotFoundError

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".json", ".parquet")
ARCHIVE_SUFFIXES = (".zip",)
MAX_ARCHIVE_FILES = 100_000
CHUNK = 1 << 20
ID = re.compile(r"^[0-9a-f]{16}$")


def human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"


def folder_of(uploads_dir: Path, upload_id: str) -> Path:
    if not ID.match(upload_id or ""):
        raise NotFoundError(f"upload {upload_id!r}")
    folder = uploads_dir / upload_id
    if not folder.is_dir():
        raise NotFoundError(f"upload {upload_id!r}")
    return folder


def _safe_name(filename: str) -> str:
    name = PurePosixPath((filename or "").replace("\\", "/")).name.strip()
    name = re.sub(r"[^\w.\-]+", "_", name)[:120].lstrip(".") or "data"
    return name


def save(stream, filename: str, uploads_dir: Path, max_bytes: int) -> Path:
    """Copy a file-like upload to a new folder; returns the data path (the table, or the unpacked folder)."""
    name = _safe_name(filename)
    suffix = Path(name).suffix.lower()
    if suffix not in TABLE_SUFFIXES + ARCHIVE_SUFFIXES:
        raise DataError(f"{filename}: unsupported file type {suffix or '(none)'}; use CSV, TSV, JSONL, Parquet or a "
                        "zip of image folders")
    folder = uploads_dir / secrets.token_hex(8)
    folder.mkdir(parents=True)
    target, written = folder / name, 0
    try:
        with open(target, "wb") as out:
            while chunk := stream.read(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise DataError(f"{filename}: larger than the upload limit of {human_size(max_bytes)}")
                out.write(chunk)
        if written == 0:
            raise DataError(f"{filename}: the file is empty")
        if suffix in ARCHIVE_SUFFIXES:
            return unpack(target, folder / Path(name).stem, max_bytes * 4)
        return target
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # nothing half-written stays behind
        raise


def unpack(archive: Path, destination: Path, max_total_bytes: int) -> Path:
    """A zip of class folders → a folder; the single top folder many zip tools add is looked through."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [info for info in bundle.infolist() if not info.is_dir()]
            if len(members) > MAX_ARCHIVE_FILES:
                raise DataError(f"{archive.name}: {len(members)} files; at most {MAX_ARCHIVE_FILES} are accepted")
            total = sum(info.file_size for info in members)
            if total > max_total_bytes:  # a zip bomb is refused before anything is written
                raise DataError(f"{archive.name}: unpacks to {human_size(total)}, over {human_size(max_total_bytes)}")
            for info in members:
                path = PurePosixPath(info.filename.replace("\\", "/"))
                if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
                    raise DataError(f"{archive.name}: refusing the entry {info.filename!r} (it points outside "
                                    "the archive's folder)")
                if path.name.startswith(".") or "__MACOSX" in path.parts:
                    continue  # macOS resource forks and hidden files are not images
                out = destination.joinpath(*path.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK)
    except zipfile.BadZipFile as error:
        raise DataError(f"{archive.name}: not a readable zip file ({error})") from None
    archive.unlink()
    entries = [entry for entry in destination.iterdir()] if destination.is_dir() else []
    if not entries:
        raise DataError(f"{archive.name}: the archive holds no files")
    if len(entries) == 1 and entries[0].is_dir() and all(child.is_dir() for child in entries[0].iterdir()):
        # photos.zip → photos/<class>/…: the class folders move up, so the upload's folder is the data
        wrapper = entries[0].rename(destination / ".wrapper")
        for child in wrapper.iterdir():
            child.rename(destination / child.name)
        wrapper.rmdir()
    return destination
