"""Malformed images: one exception type, naming the file and the offset."""

import struct
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import GOLDEN, REPO, golden_image_files, run_hiber
from hiber.errors import ImageError
from hiber.images.framing import decode_bytes, read_image
from hiber.images.imagedir import ImageDir
from hiber.images.pagemap import PAGE_SIZE, PE_PRESENT
from hiber.show import summarise

PSTREE = GOLDEN / "single" / "images" / "pstree.img"


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _expect_image_error(path, offset, words):
    with pytest.raises(ImageError) as info:
        read_image(path)
    err = info.value
    assert err.path == str(path) and err.offset == offset
    assert words in str(err)
    # and the command line says it in one line, exit code 1
    result = run_hiber("decode", "-i", path)
    assert result.returncode == 1 and result.stdout == b""
    message = result.stderr.decode()
    assert message.count("\n") == 1 and str(path) in message and words in message


def test_wrong_magic(tmp_path):
    data = bytearray(PSTREE.read_bytes())
    data[4:8] = struct.pack("<I", 0x12345678)
    _expect_image_error(_write(tmp_path, "pstree.img", data), 4, "unknown image magic 0x12345678")


def test_missing_magic(tmp_path):
    _expect_image_error(_write(tmp_path, "pstree.img", b""), 0, "no magic")
    _expect_image_error(_write(tmp_path, "core-1.img", b"\x19\x43"), 0, "too short")
    _expect_image_error(_write(tmp_path, "mm-1.img", b"\x19\x43\x56\x54"), 4, "after the head magic")


def test_truncated_length(tmp_path):
    data = PSTREE.read_bytes()[:8] + b"\x12\x00"
    _expect_image_error(_write(tmp_path, "pstree.img", data), 8, "truncated entry length")


def test_entry_longer_than_the_file(tmp_path):
    data = PSTREE.read_bytes()[:-3]
    _expect_image_error(_write(tmp_path, "pstree.img", data), 8, "runs past the end")


def test_garbage_protobuf(tmp_path):
    data = PSTREE.read_bytes()[:8] + struct.pack("<I", 6) + b"\xff" * 6
    _expect_image_error(_write(tmp_path, "pstree.img", data), 8, "bad pstree_entry entry")


def test_missing_required_field(tmp_path):
    # a pstree entry with only pid set lacks the required ppid/pgid/sid
    data = PSTREE.read_bytes()[:8] + struct.pack("<I", 2) + b"\x08\x01"
    _expect_image_error(_write(tmp_path, "pstree.img", data), 8, "bad pstree_entry entry")


def test_extra_payload_cut_short(tmp_path):
    data = (GOLDEN / "multi" / "images" / "pipes-data.img").read_bytes()[:-4]
    path = _write(tmp_path, "pipes-data.img", data)
    with pytest.raises(ImageError, match="extra payload of 15 bytes runs past"):
        read_image(path)


def test_pagemap_not_matching_pages_file(tmp_path):
    d = ImageDir(tmp_path, create=True)
    with d.pagemap_writer(1, pages_id=1) as w:
        w.add(0x1000, 2, PE_PRESENT, bytes(2 * PAGE_SIZE))
    with open(tmp_path / "pages-1.img", "ab") as f:
        f.write(bytes(PAGE_SIZE))
    with pytest.raises(ImageError, match="add up to 8192 bytes but pages-1.img holds 12288"):
        d.pages_reader(d.pagemap(1))


def test_show_dir_with_short_pages_file(tmp_path):
    src = GOLDEN / "single" / "images"
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    pages = tmp_path / "pages-1.img"
    pages.write_bytes(pages.read_bytes()[:-PAGE_SIZE])
    with pytest.raises(ImageError, match="holds"):
        summarise(tmp_path)
    result = run_hiber("show", tmp_path)
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1
    assert b"pagemap-2429.img" in result.stderr


def test_encode_rejects_bad_json(tmp_path):
    bad = _write(tmp_path, "bad.json", b'{"magic": "PSTREE", "entries": [{"pid": "x"}]}')
    result = run_hiber("encode", "-i", bad, "-o", tmp_path / "out.img")
    assert result.returncode == 1 and b"entry 0" in result.stderr
    notjson = _write(tmp_path, "notjson", b"{")
    assert run_hiber("encode", "-i", notjson, "-o", tmp_path / "o").returncode == 1
    missing = _write(tmp_path, "missing.json", b'{"magic": "PSTREE", "entries": [{"pid": 1}]}')
    result = run_hiber("encode", "-i", missing, "-o", tmp_path / "out.img")
    assert result.returncode == 1 and b"entry 0" in result.stderr


# ---- property: mutated golden images raise ImageError and nothing else ----

GOLDEN_BYTES = [(p.name, p.read_bytes()) for p in golden_image_files()]


@st.composite
def mutated_image(draw):
    name, data = draw(st.sampled_from(GOLDEN_BYTES))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[i:]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i:i + draw(st.integers(1, 16))]
    return name, bytes(data)


@settings(max_examples=5000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_image())
def test_mutated_golden_images_only_raise_image_error(sample):
    name, data = sample
    try:
        decode_bytes(data, name)
    except ImageError as e:
        assert name in str(e)


# ---- the pages reader streams with constant memory ------------------------

STREAM_SCRIPT = textwrap.dedent("""
    import os, resource, sys
    from hiber.images.imagedir import ImageDir
    from hiber.images.pagemap import PE_PRESENT, PE_LAZY, PAGE_SIZE
    d = ImageDir(sys.argv[1], create=True)
    total_pages = int(sys.argv[2])
    # one pagemap entry per 64 pages, alternating flags so they do not merge
    with d.pagemap_writer(1, pages_id=1) as w:
        for i in range(0, total_pages, 64):
            w.add(0x10000000 + i * PAGE_SIZE, 64, PE_PRESENT | (PE_LAZY if i % 128 else 0))
    # the data: a sparse file of the right size (reads back as zeros)
    os.truncate(d.file_path("PAGES", 1), total_pages * PAGE_SIZE)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pm = d.pagemap(1)
    seen = 0
    for vaddr, chunk in d.pages_reader(pm).chunks():
        seen += len(chunk)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(seen, before, after)
""")


@pytest.mark.timeout(300)
def test_pages_reader_streams_1gib_with_constant_memory(tmp_path):
    def stream(pages):
        out = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, str(tmp_path / str(pages)),
                              str(pages)], capture_output=True, check=True, cwd=REPO,
                             timeout=240, stdin=subprocess.DEVNULL)
        seen, before, after = map(int, out.stdout.split())
        assert seen == pages * PAGE_SIZE
        return after  # peak RSS in KiB

    small = stream(4096)         # 16 MiB
    large = stream(262144)       # 1 GiB
    # the pagemap of 1 GiB has 4096 entries (a few hundred KiB of objects);
    # the data itself must not count
    assert large - small < 16 * 1024, f"peak RSS grew from {small} KiB to {large} KiB"
