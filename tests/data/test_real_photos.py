"""Tests for the real-photo benchmark: manifest validation, split rule, rebuild, and the committed manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from evbattery.data.real_photos import (
    CLASSES,
    COLUMNS,
    REDISTRIBUTABLE,
    Row,
    assign_splits,
    committed_path,
    read_manifest,
    rebuild,
    write_manifest,
)

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "real_photos"
MANIFEST = BENCH / "manifest.csv"
PHOTOS = BENCH / "photos"
COMMIT = "a" * 40


def _jpeg(size: tuple[int, int], color: tuple[int, int, int] = (200, 30, 30), orientation: int | None = None) -> bytes:
    im = Image.new("RGB", size, color)
    buf = io.BytesIO()
    if orientation is None:
        im.save(buf, format="JPEG", quality=95)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, format="JPEG", quality=95, exif=exif)
    return buf.getvalue()


def _row(rid: str, path: str, data: bytes, cls: str = "pouch", split: str = "test", repo: str = "someone/cells") -> Row:
    return Row(
        id=rid,
        cls=cls,
        split=split,
        repo=repo,
        commit=COMMIT,
        path=path,
        license="none stated",
        sha256=hashlib.sha256(data).hexdigest(),
        kind="bench",
    )


def _clone(tmp_path: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A fake local clone laid out as <sources>/<owner>/<name>/<path>."""
    sources = tmp_path / "sources"
    for rel, data in files.items():
        f = sources / repo / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    return sources


def _write_csv(path: Path, rows: list[dict[str, str]], header: tuple[str, ...] = COLUMNS) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def _good() -> dict[str, str]:
    return _row("pou-001", "img/a.jpg", b"x").as_csv()


# --- manifest validation -------------------------------------------------------------------------------------


def test_read_manifest_round_trip(tmp_path: Path) -> None:
    rows = [_row("pou-001", "img/a.jpg", b"a"), _row("pri-001", "img/b.png", b"b", cls="prismatic", split="dev")]
    write_manifest(rows, tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv") == rows


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("class", "coin"),
        ("split", "train"),
        ("commit", "abc123"),
        ("sha256", "0" * 63),
        ("repo", "no-slash"),
        ("kind", "render"),
        ("id", "Bad ID"),
        ("path", "../escape.jpg"),
        ("license", ""),
    ],
)
def test_bad_value_names_file_line_and_field(tmp_path: Path, field: str, value: str) -> None:
    ok, bad = _good(), {**_good(), "id": "pou-002", field: value}
    if field == "id":
        bad["id"] = value
    m = _write_csv(tmp_path / "m.csv", [ok, bad])
    with pytest.raises(ValueError, match=rf"m\.csv:3: field '{field}'"):
        read_manifest(m)


def test_duplicate_id_is_rejected(tmp_path: Path) -> None:
    m = _write_csv(tmp_path / "m.csv", [_good(), _good()])
    with pytest.raises(ValueError, match=r"m\.csv:3: field 'id': 'pou-001' already used on line 2"):
        read_manifest(m)


def test_bad_header_is_rejected(tmp_path: Path) -> None:
    header = tuple(c for c in COLUMNS if c != "kind")
    m = _write_csv(tmp_path / "m.csv", [{k: v for k, v in _good().items() if k != "kind"}], header=header)
    with pytest.raises(ValueError, match=r"m\.csv:1: field 'kind'"):
        read_manifest(m)


# --- split rule ----------------------------------------------------------------------------------------------


def test_assign_splits_is_deterministic_stratified_and_keeps_repos_whole_when_it_can() -> None:
    rows = [_row(f"cyl-{i:03d}", f"{i}.jpg", bytes([i]), cls="cylindrical", repo=f"o/r{i % 4}") for i in range(20)]
    rows += [_row(f"pou-{i:03d}", f"{i}.jpg", bytes([i]), cls="pouch", repo="o/only") for i in range(5)]
    a, b = assign_splits(rows), assign_splits(list(reversed(rows)))
    assert {r.id: r.split for r in a} == {r.id: r.split for r in b}
    counts = Counter((r.cls, r.split) for r in a)
    assert counts[("cylindrical", "dev")] == 8 and counts[("pouch", "dev")] == 2
    # four repos of five photos each: dev (8) cannot be whole repos only, but at most one repo is split.
    per_repo = {repo: {r.split for r in a if r.repo == repo} for repo in {r.repo for r in a if r.cls == "cylindrical"}}
    assert sum(len(s) == 2 for s in per_repo.values()) <= 1


# --- rebuild ---------------------------------------------------------------------------------------------------


def test_rebuild_from_local_clone_writes_tree_and_shrinks(tmp_path: Path) -> None:
    big, small = _jpeg((1200, 800)), _jpeg((300, 200), (10, 200, 10))
    png = io.BytesIO()
    Image.new("RGB", (900, 1000), (0, 0, 255)).save(png, format="PNG")
    repo = "someone/cells"
    sources = _clone(tmp_path, repo, {"a/big.jpg": big, "a/small.jpg": small, "b/c.png": png.getvalue()})
    rows = [
        _row("pou-001", "a/big.jpg", big, split="dev"),
        _row("pri-001", "a/small.jpg", small, cls="prismatic"),
        _row("cyl-001", "b/c.png", png.getvalue(), cls="cylindrical"),
    ]
    write_manifest(rows, tmp_path / "manifest.csv")
    out = tmp_path / "out"
    summary = rebuild(tmp_path / "manifest.csv", out, sources=[sources])
    assert summary["written"] == 3 and summary["from_clone"] == 3
    assert summary["missing"] == [] and summary["hash_mismatch"] == []
    with Image.open(out / "dev" / "pouch" / "pou-001.jpg") as im:
        assert im.size == (512, 341)
    with Image.open(out / "test" / "prismatic" / "pri-001.jpg") as im:
        assert im.size == (300, 200)  # never enlarged
    with Image.open(out / "test" / "cylindrical" / "cyl-001.png") as im:
        assert im.format == "PNG" and max(im.size) == 512 and im.mode == "RGB"
    saved = json.loads((out / "real_photos.json").read_text())
    assert saved["written"] == 3 and {p["id"] for p in saved["photos"]} == {"pou-001", "pri-001", "cyl-001"}
    assert not list(out.rglob(".*"))  # no temp files left


def test_rebuild_finds_clone_spelled_owner_plus_name(tmp_path: Path) -> None:
    data = _jpeg((64, 32))
    f = tmp_path / "src" / "someone+cells" / "x.jpg"
    f.parent.mkdir(parents=True)
    f.write_bytes(data)
    write_manifest([_row("pou-001", "x.jpg", data)], tmp_path / "m.csv")
    assert rebuild(tmp_path / "m.csv", tmp_path / "out", sources=[tmp_path / "src"])["from_clone"] == 1


def test_rebuild_applies_exif_orientation_to_pixels(tmp_path: Path) -> None:
    # Stored landscape: left half red, right half blue. Orientation 6 means "rotate 90° clockwise to display",
    # so the displayed image is portrait with red on top and blue at the bottom.
    im = Image.new("RGB", (200, 100), (255, 0, 0))
    im.paste((0, 0, 255), (100, 0, 200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, exif=exif)
    data = buf.getvalue()
    sources = _clone(tmp_path, "someone/cells", {"rot.jpg": data})
    write_manifest([_row("cyl-001", "rot.jpg", data, cls="cylindrical")], tmp_path / "m.csv")
    rebuild(tmp_path / "m.csv", tmp_path / "out", sources=[sources])
    with Image.open(tmp_path / "out" / "test" / "cylindrical" / "cyl-001.jpg") as got:
        assert got.size == (100, 200)
        top, bottom = got.getpixel((50, 25)), got.getpixel((50, 175))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_rebuild_rejects_hash_mismatch_without_leaving_a_file(tmp_path: Path) -> None:
    real, other = _jpeg((100, 100)), _jpeg((100, 100), (0, 0, 0))
    sources = _clone(tmp_path, "someone/cells", {"p.jpg": real})
    write_manifest([_row("pou-001", "p.jpg", other)], tmp_path / "m.csv")
    out = tmp_path / "out"
    summary = rebuild(tmp_path / "m.csv", out, sources=[sources])
    assert summary["hash_mismatch"] == ["pou-001"] and summary["written"] == 0
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["real_photos.json"]


def test_rebuild_reports_missing(tmp_path: Path) -> None:
    write_manifest([_row("pou-001", "nowhere.jpg", b"zz")], tmp_path / "m.csv")
    summary = rebuild(tmp_path / "m.csv", tmp_path / "out", sources=[tmp_path / "empty"])
    assert summary["missing"] == ["pou-001"] and summary["written"] == 0


def test_rebuild_with_only_committed_photos_covers_those_rows(tmp_path: Path) -> None:
    rows = read_manifest(MANIFEST)
    committed = [r for r in rows if committed_path(r, PHOTOS).is_file()]
    assert committed, "expected at least one committed photo"
    summary = rebuild(MANIFEST, tmp_path / "out", sources=[tmp_path / "no-sources"])
    assert summary["from_committed"] == len(committed) == summary["written"]
    assert sorted(summary["unverified"]) == sorted(r.id for r in committed)
    assert set(summary["missing"]) == {r.id for r in rows} - {r.id for r in committed}
    for r in committed:
        with Image.open(tmp_path / "out" / r.split / r.cls / f"{r.id}{r.ext}") as im:
            assert max(im.size) <= 512


# --- the committed manifest ---------------------------------------------------------------------------------


def test_committed_manifest_meets_the_benchmark_contract() -> None:
    rows = read_manifest(MANIFEST)  # also checks columns, values and unique ids
    assert len({r.id for r in rows}) == len(rows)
    per_class = Counter(r.cls for r in rows)
    assert set(per_class) == set(CLASSES)
    for cls in CLASSES:
        assert {r.split for r in rows if r.cls == cls} == {"dev", "test"}, cls
    assert len({(r.repo, r.commit, r.path) for r in rows}) == len(rows), "a source file is listed twice"
    assert len({r.sha256 for r in rows}) == len(rows), "two rows have the same original bytes"


def test_committed_manifest_reaches_target_size() -> None:
    rows = read_manifest(MANIFEST)
    per_class = Counter(r.cls for r in rows)
    assert len(rows) >= 90 and all(per_class[c] >= 20 for c in CLASSES)


def test_every_committed_photo_is_listed_and_redistributable() -> None:
    by_key = {(r.cls, f"{r.id}{r.ext}"): r for r in read_manifest(MANIFEST)}
    files = [p for p in PHOTOS.rglob("*") if p.is_file()]
    for f in files:
        row = by_key.get((f.parent.name, f.name))
        assert row is not None, f"{f} is not in the manifest"
        assert row.license in REDISTRIBUTABLE, f"{f}: licence {row.license!r} does not allow redistribution"
        with Image.open(f) as im:
            assert max(im.size) <= 512
