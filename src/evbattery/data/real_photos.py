"""The real-photo benchmark: a manifest of public photos of Li-ion cells, and a way to rebuild the set.

Models are trained on synthetic photos; this benchmark measures them on real ones. The photos live in public
GitHub repositories under many licences, so the repository does not carry them all: it carries
`benchmarks/real_photos/manifest.csv` (where each photo comes from, pinned to a commit, with the SHA-256 of the
original bytes) and shrunk copies of only those photos whose licence allows redistribution.

`rebuild()` turns the manifest back into a folder of images, `<out>/<split>/<class>/<id>.<ext>`, from whatever is
at hand: a local clone, a bare git mirror, the committed copies, or (when asked) raw.githubusercontent.com.
Nobody trains on this set; `dev` is for choosing recipes, `test` for the number that gets reported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import tempfile
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

COLUMNS = ("id", "class", "split", "repo", "commit", "path", "license", "sha256", "kind")
CLASSES = ("cylindrical", "pouch", "prismatic")
SPLITS = ("dev", "test")
KINDS = ("product", "bench", "pack", "tray", "hand", "other")
MAX_SIDE = 512
DEV_FRACTION = 0.4
SPLIT_SEED = "evbattery-real-photos-v1"
SUMMARY_NAME = "real_photos.json"
# Licences (SPDX ids) that allow redistributing a shrunk copy, given attribution where the licence asks for it.
REDISTRIBUTABLE = frozenset(
    {"CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "Unlicense"}
)
# Formats Pillow writes that we keep; anything else (AVIF, GIF, ...) is written as JPEG.
_KEEP_EXT = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png", ".webp": ".webp"}
_SAVE_FORMAT = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HEX40_RE = re.compile(r"^[0-9a-f]{40}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Row:
    """One photo of the benchmark, as listed in the manifest."""

    id: str
    cls: str
    split: str
    repo: str
    commit: str
    path: str
    license: str
    sha256: str
    kind: str

    @property
    def ext(self) -> str:
        """The extension the rebuilt (and committed) copy gets: the source's where Pillow writes it, else `.jpg`."""
        return _KEEP_EXT.get(Path(self.path).suffix.lower(), ".jpg")

    @property
    def redistributable(self) -> bool:
        """Whether the licence recorded for the source allows redistributing a copy."""
        return self.license in REDISTRIBUTABLE

    def as_csv(self) -> dict[str, str]:
        """The row as the manifest spells it (`class`, not `cls`)."""
        d = asdict(self)
        d["class"] = d.pop("cls")
        return {c: d[c] for c in COLUMNS}


def _check(ok: bool, where: str, field: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{where}: field '{field}': {message}")


def _validate(values: dict[str, str], where: str) -> Row:
    """Build a Row from one CSV record, or raise ValueError naming the place and the field."""
    for c in COLUMNS:
        _check(bool(values.get(c)), where, c, "is empty")
    _check(bool(_ID_RE.match(values["id"])), where, "id", f"{values['id']!r} is not a lower-case slug")
    _check(values["class"] in CLASSES, where, "class", f"{values['class']!r} is not one of {', '.join(CLASSES)}")
    _check(values["split"] in SPLITS, where, "split", f"{values['split']!r} is not one of {', '.join(SPLITS)}")
    _check(bool(_REPO_RE.match(values["repo"])), where, "repo", f"{values['repo']!r} is not owner/name")
    _check(bool(_HEX40_RE.match(values["commit"])), where, "commit", "is not 40 lower-case hex digits")
    p = values["path"]
    _check(not p.startswith("/") and ".." not in Path(p).parts, where, "path", f"{p!r} must be relative, no '..'")
    _check(bool(_HEX64_RE.match(values["sha256"])), where, "sha256", "is not 64 lower-case hex digits")
    _check(values["kind"] in KINDS, where, "kind", f"{values['kind']!r} is not one of {', '.join(KINDS)}")
    return Row(
        id=values["id"],
        cls=values["class"],
        split=values["split"],
        repo=values["repo"],
        commit=values["commit"],
        path=p,
        license=values["license"],
        sha256=values["sha256"],
        kind=values["kind"],
    )


def read_manifest(path: str | Path) -> list[Row]:
    """Read and validate a manifest; a bad header, row or duplicate id raises ValueError naming file, line, field."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = tuple(reader.fieldnames or ())
        if header != COLUMNS:
            missing = [c for c in COLUMNS if c not in header]
            extra = [c for c in header if c not in COLUMNS]
            field = (missing or extra or ["<order>"])[0]
            raise ValueError(f"{path}:1: field '{field}': header must be {','.join(COLUMNS)}, got {','.join(header)}")
        rows: list[Row] = []
        seen: dict[str, int] = {}
        for record in reader:
            where = f"{path}:{reader.line_num}"
            if None in record or any(v is None for v in record.values()):
                raise ValueError(f"{where}: field '{COLUMNS[-1]}': row has {len(COLUMNS)} columns expected")
            row = _validate({k: (v or "").strip() for k, v in record.items()}, where)
            if row.id in seen:
                raise ValueError(f"{where}: field 'id': {row.id!r} already used on line {seen[row.id]}")
            seen[row.id] = reader.line_num
            rows.append(row)
    return rows


def write_manifest(rows: Iterable[Row], path: str | Path) -> None:
    """Write rows as a manifest (atomically), in the order given."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_csv())
    _atomic_write(Path(path), buf.getvalue().encode("utf-8"))


def _rank(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode("utf-8")).hexdigest()


def assign_splits(rows: Sequence[Row], seed: str = SPLIT_SEED, dev_fraction: float = DEV_FRACTION) -> list[Row]:
    """Give every row a split: about `dev_fraction` dev per class, whole source repos kept together where possible.

    For each class separately: the target is round(dev_fraction * n) dev photos (at least 1 and at most n - 1
    when the class has two or more photos). The class's source repos are put in a seeded order (SHA-256 of
    seed, class, repo); dev gets the set of whole repos whose photo count comes closest to the target without
    passing it (among equally good sets, the one found first when walking repos in that order). If that leaves
    a gap, the first repo not in dev (in the same order) is split: its photos, ordered by SHA-256 of seed and
    id, fill the gap. Everything else is test. Classes are split independently, so a repo that gives photos of
    two classes may sit in dev for one and test for the other. The same input gives the same split.
    """
    by_class: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_class[row.cls].append(row)
    dev_ids: set[str] = set()
    for cls, members in by_class.items():
        n = len(members)
        target = min(max(round(dev_fraction * n), 1), n - 1) if n > 1 else 0
        groups: dict[str, list[Row]] = defaultdict(list)
        for row in members:
            groups[row.repo].append(row)
        order = sorted(groups, key=lambda repo: _rank(seed, cls, repo))
        # Subset sums over whole repos; for each reachable size keep the first subset found in seeded order.
        reachable: dict[int, tuple[str, ...]] = {0: ()}
        for repo in order:
            for total, subset in sorted(reachable.items()):
                new = total + len(groups[repo])
                if new <= target and new not in reachable:
                    reachable[new] = (*subset, repo)
        taken = max(reachable)
        chosen = set(reachable[taken])
        for repo in chosen:
            dev_ids.update(r.id for r in groups[repo])
        if taken < target:
            repo = next(r for r in order if r not in chosen)
            fill = sorted(groups[repo], key=lambda r: _rank(seed, r.id))[: target - taken]
            dev_ids.update(r.id for r in fill)
    return [Row(**{**asdict(r), "split": "dev" if r.id in dev_ids else "test"}) for r in rows]


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _repo_dirs(source: Path, repo: str) -> list[Path]:
    owner, name = repo.split("/", 1)
    return [source / owner / name, source / f"{owner}+{name}"]


def _find_git_dir(folder: Path) -> Path | None:
    """The git directory inside a mirror or clone folder: `repo/.git`, `repo` (bare), `.git`, or the folder itself."""
    for cand in (folder / "repo" / ".git", folder / "repo", folder / ".git", folder):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    return None


def _from_clone(row: Row, sources: Sequence[Path]) -> bytes | None:
    for source in sources:
        for folder in _repo_dirs(source, row.repo):
            f = folder / row.path
            if f.is_file():
                return f.read_bytes()
    return None


def _from_git(row: Row, sources: Sequence[Path]) -> bytes | None:
    for source in sources:
        for folder in _repo_dirs(source, row.repo):
            git_dir = _find_git_dir(folder) if folder.is_dir() else None
            if git_dir is None:
                continue
            res = subprocess.run(
                ["git", f"--git-dir={git_dir}", "show", f"{row.commit}:{row.path}"],
                capture_output=True,
                check=False,
            )
            if res.returncode == 0:
                return res.stdout
    return None


def committed_path(row: Row, photos_dir: Path) -> Path:
    """Where the committed (shrunk) copy of a row lives: `<photos_dir>/<class>/<id>.<ext>`."""
    return photos_dir / row.cls / f"{row.id}{row.ext}"


def _download(row: Row) -> bytes | None:
    url = f"https://raw.githubusercontent.com/{row.repo}/{row.commit}/{row.path}"
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
            return resp.read()
    except OSError:
        return None


def shrink(data: bytes, ext: str, max_side: int = MAX_SIDE) -> bytes:
    """Decode an image, apply its EXIF orientation, make it RGB, fit it in max_side, and encode it as `ext`."""
    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    fmt = _SAVE_FORMAT[ext]
    im.save(out, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    return out.getvalue()


def rebuild(
    manifest: str | Path,
    out_dir: str | Path,
    sources: Sequence[str | Path],
    download: bool = False,
    photos_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Rebuild the benchmark into `<out_dir>/<split>/<class>/<id>.<ext>` and return (and save) a summary.

    Each photo's original bytes are looked for, in order: in a local clone `<source>/<owner>/<name>/<path>` or
    `<source>/<owner>+<name>/<path>`; in a git directory inside `<source>/<owner>+<name>/` (or `<owner>/<name>/`)
    via `git show <commit>:<path>`; as the committed copy under `photos_dir` (default: `photos/` next to the
    manifest), which is already shrunk so its source hash cannot be checked; and, when `download` is true, from
    raw.githubusercontent.com at the pinned commit. Original bytes whose SHA-256 differs from the manifest are
    reported in `hash_mismatch` and nothing is written for them. The summary, with one entry per photo, is also
    written to `<out_dir>/real_photos.json`.
    """
    manifest = Path(manifest)
    out = Path(out_dir)
    rows = read_manifest(manifest)
    src_paths = [Path(s) for s in sources]
    committed = Path(photos_dir) if photos_dir is not None else manifest.parent / "photos"
    summary: dict[str, Any] = {
        "manifest": str(manifest),
        "total": len(rows),
        "written": 0,
        "from_clone": 0,
        "from_git": 0,
        "from_committed": 0,
        "downloaded": 0,
        "missing": [],
        "hash_mismatch": [],
        "undecodable": [],
        "unverified": [],
        "note": "photos taken from the committed copies are already shrunk; their source hash cannot be checked",
        "photos": [],
    }
    for row in rows:
        origin, data = None, _from_clone(row, src_paths)
        if data is not None:
            origin = "clone"
        if data is None and (data := _from_git(row, src_paths)) is not None:
            origin = "git"
        if data is None and (f := committed_path(row, committed)).is_file():
            origin, data = "committed", f.read_bytes()
        if data is None and download and (data := _download(row)) is not None:
            origin = "download"
        entry: dict[str, Any] = {**row.as_csv(), "source": origin, "file": None}
        summary["photos"].append(entry)
        if data is None:
            summary["missing"].append(row.id)
            continue
        if origin != "committed" and sha256_bytes(data) != row.sha256:
            summary["hash_mismatch"].append(row.id)
            entry["source"] = f"{origin} (hash mismatch)"
            continue
        try:
            encoded = shrink(data, row.ext)
        except (OSError, ValueError, Image.DecompressionBombError):
            summary["undecodable"].append(row.id)
            continue
        target = out / row.split / row.cls / f"{row.id}{row.ext}"
        _atomic_write(target, encoded)
        entry["file"] = str(target.relative_to(out))
        summary["written"] += 1
        key = {"clone": "from_clone", "git": "from_git", "committed": "from_committed", "download": "downloaded"}
        summary[key[origin]] += 1
        if origin == "committed":
            summary["unverified"].append(row.id)
    _atomic_write(out / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    return summary
