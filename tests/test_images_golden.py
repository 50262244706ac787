"""The image layer against CRIU 4.2's own images and crit's decoding of them."""

import json
import os
import subprocess

import pytest

from conftest import GOLDEN, decoded_json_of, golden_image_files, run_hiber
from hiber.images import magic as M
from hiber.images.framing import encode_image, read_image
from hiber.images.imagedir import ImageDir
from hiber.images.jsonimg import image_to_json, json_to_bytes
from hiber.images.messages import classes
from hiber.images.pagemap import PAGE_SIZE, PE_LAZY, PE_PRESENT

GOLDEN_FILES = golden_image_files()
IDS = [f"{p.parent.parent.name}/{p.name}" for p in GOLDEN_FILES]


def test_golden_dirs_are_there():
    assert len(GOLDEN_FILES) >= 50, f"golden images not found under {GOLDEN}"


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=IDS)
def test_decode_matches_crit_json(path):
    expected = json.loads(decoded_json_of(path).read_text())
    assert image_to_json(read_image(path)) == expected


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=IDS)
def test_encode_of_decode_gives_the_same_bytes(path):
    raw = path.read_bytes()
    assert encode_image(read_image(path)) == raw
    assert json_to_bytes(image_to_json(read_image(path))) == raw
    # the plain (not pretty) JSON form carries the same content
    assert json_to_bytes(image_to_json(read_image(path), pretty=False)) == raw


def test_cli_decode_and_encode_round_trip(tmp_path):
    for path in GOLDEN_FILES[:: max(1, len(GOLDEN_FILES) // 12)]:
        out = run_hiber("decode", "-i", path, "--pretty", check=True)
        assert json.loads(out.stdout) == json.loads(decoded_json_of(path).read_text())
        json_file = tmp_path / "img.json"
        json_file.write_bytes(out.stdout)
        run_hiber("encode", "-i", json_file, "-o", tmp_path / "img", check=True)
        assert (tmp_path / "img").read_bytes() == path.read_bytes()


def test_pagemap_offsets_follow_present_entries():
    d = ImageDir(GOLDEN / "multi" / "images")
    for pid in d.keys("PAGEMAP"):
        pm = d.pagemap(pid)
        offset = 0
        for run in pm.runs:
            assert run.pages_offset == (offset if run.present else None)
            if run.present:
                offset += run.size
        reader = d.pages_reader(pm)  # checks the file size
        got = sum(len(chunk) for _, chunk in reader.chunks(chunk_size=3 * PAGE_SIZE))
        assert got == pm.present_pages * PAGE_SIZE
    shmem = d.pagemap(d.keys("SHMEM_PAGEMAP")[0], shmem=True)
    assert shmem.runs[0].vaddr == 0 and shmem.present_pages == 1


def test_vdso_pages_start_with_elf_magic():
    d = ImageDir(GOLDEN / "single" / "images")
    pid = d.keys("CORE")[0]
    vdso = next(v for v in d.read_one("MM", pid).vmas if v.status & 0x8)
    pm = d.pagemap(pid)
    run = next(r for r in pm.runs if r.vaddr == vdso.start)
    assert d.pages_reader(pm).read(run)[:4] == b"\x7fELF"


def test_pagemap_reader_falls_back_to_field_2(tmp_path):
    d = ImageDir(tmp_path, create=True)
    entry = classes["pagemap_entry"](vaddr=0x1000, compat_nr_pages=3, flags=PE_PRESENT)
    d.write("PAGEMAP", 7, [classes["pagemap_head"](pages_id=9), entry])
    (tmp_path / "pages-9.img").write_bytes(b"x" * 3 * PAGE_SIZE)
    pm = d.pagemap(7)
    assert pm.pages_id == 9 and pm.runs[0].nr_pages == 3
    d.pages_reader(pm)


def test_pagemap_writer_merges_and_writes_v42_layout(tmp_path):
    d = ImageDir(tmp_path, create=True)
    with d.pagemap_writer(5, pages_id=1) as w:
        w.add(0x10000, 1, PE_PRESENT | PE_LAZY, b"a" * PAGE_SIZE)
        w.add(0x11000, 2, PE_PRESENT | PE_LAZY, b"b" * 2 * PAGE_SIZE)  # merges
        w.add(0x13000, 1, PE_PRESENT, b"c" * PAGE_SIZE)                # other flags
        w.add(0x20000, 4, PE_LAZY)                                      # hole, no data
        w.add(0x30000, 1, PE_PRESENT, b"d" * PAGE_SIZE)
    decoded = image_to_json(read_image(tmp_path / "pagemap-5.img"))
    assert decoded["entries"] == [
        {"pages_id": 1},
        {"vaddr": "0x10000", "compat_nr_pages": 0, "flags": "PE_LAZY | PE_PRESENT", "nr_pages": 3},
        {"vaddr": "0x13000", "compat_nr_pages": 0, "flags": "PE_PRESENT", "nr_pages": 1},
        {"vaddr": "0x20000", "compat_nr_pages": 0, "flags": "PE_LAZY", "nr_pages": 4},
        {"vaddr": "0x30000", "compat_nr_pages": 0, "flags": "PE_PRESENT", "nr_pages": 1},
    ]
    pm = d.pagemap(5)
    data = b"".join(bytes(c) for _, c in d.pages_reader(pm).chunks())
    assert data == b"a" * PAGE_SIZE + b"b" * 2 * PAGE_SIZE + b"c" * PAGE_SIZE + b"d" * PAGE_SIZE


def test_show_summarises_a_dir():
    out = run_hiber("show", GOLDEN / "multi" / "images", check=True).stdout.decode()
    assert "2433" in out and "2435" in out and "threads: 2433 2434" in out
    assert "vdso" in out and "vvar" in out and "pipe:[563989]" in out
    assert "Totals: 2 process(es), 3 thread(s)" in out


def test_show_file_layout():
    out = run_hiber("show", GOLDEN / "single" / "images" / "pstree.img", check=True)
    assert b"PSTREE image, 1 entry" in out.stdout and b"pid: 2429" in out.stdout


def test_every_magic_has_a_distinct_file_name():
    names = {}
    for t in M.IMAGE_TYPES:
        if t.template:
            assert t.template not in names, t.name
            names[t.template] = t
            key = 0x2a if "{}" in t.template else None
            found, found_key = M.type_of_file_name(t.file_name(key))
            assert found is t and found_key == key


def test_schema_prints_as_proto_text():
    from hiber.images.messages import schema
    text = schema.proto_text()
    assert "message pagemap_entry {" in text and "optional uint64 nr_pages = 5;" in text
    assert "enum TtyType {" in text


# ---- crit (Debian's criu 3.17) reads what hiber writes ------------------

def _crit_decode(crit, path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run([crit, "decode", "-i", str(path)], capture_output=True, env=env,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"crit decode {path}: {out.stderr.decode()}"
    return json.loads(out.stdout)


def _assert_crit_agrees(crit_value, ours, where):
    """crit's view must equal ours on every field crit knows."""
    if isinstance(crit_value, dict):
        for key, value in crit_value.items():
            assert key in ours, f"{where}.{key}: crit shows a field hiber lacks"
            _assert_crit_agrees(value, ours[key], f"{where}.{key}")
    elif isinstance(crit_value, list):
        assert len(crit_value) == len(ours), where
        for i, (a, b) in enumerate(zip(crit_value, ours)):
            _assert_crit_agrees(a, b, f"{where}[{i}]")
    else:
        assert crit_value == ours, f"{where}: crit {crit_value!r}, hiber {ours!r}"


def _ours_as_crit317_names(image_json):
    """crit 3.17 predates v4.2's pagemap field 5: its "nr_pages" is field 2."""
    if image_json["magic"] == "PAGEMAP":
        for e in image_json["entries"][1:]:
            e["nr_pages"] = e.pop("compat_nr_pages")
    return image_json


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=IDS)
def test_crit_reads_images_hiber_writes(tmp_path, crit, path):
    written = tmp_path / path.name
    written.write_bytes(json_to_bytes(image_to_json(read_image(path))))
    crit_json = _crit_decode(crit, written)
    ours = _ours_as_crit317_names(image_to_json(read_image(written), pretty=False))
    assert crit_json["magic"] == ours["magic"]
    _assert_crit_agrees(crit_json["entries"], ours["entries"], path.name)


def test_crit_reads_a_pagemap_hiber_writes(tmp_path, crit):
    d = ImageDir(tmp_path, create=True)
    with d.pagemap_writer(5, pages_id=1) as w:
        w.add(0x10000, 2, PE_PRESENT | PE_LAZY, bytes(2 * PAGE_SIZE))
        w.add(0x40000, 1, PE_PRESENT, bytes(PAGE_SIZE))
    crit_json = _crit_decode(crit, tmp_path / "pagemap-5.img")
    assert crit_json["entries"][0] == {"pages_id": 1}
    assert [e["vaddr"] for e in crit_json["entries"][1:]] == [0x10000, 0x40000]
    assert [e["flags"] for e in crit_json["entries"][1:]] == [6, 4]
