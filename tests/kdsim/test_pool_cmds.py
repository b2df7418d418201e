"""!pool, !poolval, !poolused and !poolfind on the crashed default machine and on a machine
whose pool holds blocks of several tags (freed ones, big ones, a verified driver's special
pool block, a page whose headers were overrun)."""

from __future__ import annotations

import struct

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.ex.pool import NONPAGED_POOL, PAGED_POOL
from tests.conftest import run
from tests.machine.probe import boot_probe

PAGE = 0x1000


def header(m, block: int) -> tuple[int, int, int, str]:
    """(previous size, size, PoolType, tag) of the block's _POOL_HEADER, from memory."""
    prev, _index, units, pool_type, tag = struct.unpack("<BBBBI", m.kspace.read(block - 0x10, 8))
    return prev * 0x10, units * 0x10, pool_type, tag.to_bytes(4, "little").decode("latin-1")


@pytest.fixture(scope="module")
def pooled():
    m = boot_probe("pooltest", {}, verified=True)
    blocks = {
        "a": m.pool.allocate(NONPAGED_POOL, 0x40, "TagA"),
        "b": m.pool.allocate(NONPAGED_POOL, 0x100, "TagB"),
        "b2": m.pool.allocate(NONPAGED_POOL, 0x100, "TagB"),
        "c": m.pool.allocate(PAGED_POOL, 0x80, "TagC"),
        "f": m.pool.allocate(NONPAGED_POOL, 0x60, "TagF"),
        "big": m.pool.allocate(NONPAGED_POOL, 0x2800, "BigT"),
        "spc": m.pool.allocate_special(NONPAGED_POOL, 0x30, "SpcT"),
    }
    m.pool.free(blocks["f"])
    return m, Session(LiveTarget(m)), blocks


def test_pool_walks_the_page_and_marks_the_block(pooled) -> None:
    m, s, blocks = pooled
    for name in ("a", "b", "b2"):
        block = blocks[name]
        out = run(s, f"!pool {block:x}")
        assert out[0] == f"Pool page {block:016x} region is Nonpaged pool"
        prev, size, pool_type, tag = header(m, block)
        assert pool_type != 0
        hit = (f"*{block - 0x10:016x} size: {size:4x} previous size: {prev:4x}  "
               f"(Allocated) *{tag}")
        assert hit in out
        assert out[out.index(hit) + 1] == "\t\tOwning component : Unknown (update pooltag.txt)"
        rows = [line for line in out[1:] if not line.startswith("\t")]
        addrs = [int(r[1:17], 16) for r in rows]
        sizes = [int(r.split("size:")[1].split()[0], 16) for r in rows]
        assert addrs[0] == block & ~(PAGE - 1)  # walked from the page start ...
        assert sum(sizes) == PAGE  # ... to its end
        assert all(a + sz == nxt for a, sz, nxt in zip(addrs, sizes, addrs[1:], strict=False))


def test_pool_paged_and_freed_blocks(pooled) -> None:
    m, s, blocks = pooled
    out = run(s, f"!pool {blocks['c']:x}")
    assert out[0].endswith("region is Paged pool")
    assert any(line.startswith("*") and line.endswith("*TagC") for line in out)
    out = run(s, f"!pool {blocks['f']:x}")
    hit = next(line for line in out if line.startswith("*"))
    assert "(Free)" in hit and header(m, blocks["f"])[2] == 0


def test_pool_big_and_special_blocks(pooled) -> None:
    _m, s, blocks = pooled
    big = blocks["big"]
    for at in (big, big + 0x1800):
        out = run(s, f"!pool {at:x}")
        assert out[1] == f"*{big:016x} : large page allocation, tag is BigT, size is 0x2800 bytes"
    out = run(s, f"!pool {blocks['spc']:x}")
    assert out[0] == f"Pool page {blocks['spc']:016x} region is Special pool"
    spc = blocks["spc"]
    page = spc & ~(PAGE - 1)
    assert out[1] == (f"*{page:016x} size: {page + PAGE - spc:4x} data: {spc:016x} (NonPaged) "
                      "*SpcT")
    assert out[2] == "\t\tOwning component : Unknown (update pooltag.txt)"


def test_pool_flags(pooled) -> None:
    _m, s, blocks = pooled
    out = run(s, f"!pool {blocks['a']:x} 2")
    assert len([line for line in out if not line.startswith("\t")]) == 2  # region + hit
    out = run(s, f"!pool {blocks['a']:x} 80000002")
    assert len(out) == 1 and out[0].startswith("*")
    out = run(s, f"!pool {blocks['a']:x} 3")
    assert out[3] == f"    {blocks['a'] - 0x10:016x}  " + " ".join(
        f"{w:08x}" for w in struct.unpack("<4I", s.target.read_virtual(blocks["a"] - 0x10, 16)))


def test_poolused_counts_from_the_tracker(pooled) -> None:
    m, s, blocks = pooled
    out = run(s, "!poolused 0 Tag?")
    assert out[:4] == [" Sorting by Tag", "", "               NonPaged                  Paged",
                       " Tag     Allocs         Used     Allocs         Used"]
    rows = {line[1:5]: line for line in out[5:] if line and not line.startswith("TOTAL")}
    assert sorted(rows) == ["TagA", "TagB", "TagC"]  # TagF was freed: nothing left
    for tag, row in rows.items():
        e = m.pool.tracker.entry(int.from_bytes(tag.encode(), "little"))
        np = e.get("NonPagedAllocs") - e.get("NonPagedFrees")
        p = e.get("PagedAllocs") - e.get("PagedFrees")
        assert row == (f" {tag}{np:>10}{e.get('NonPagedBytes'):>13}{p:>11}"
                       f"{e.get('PagedBytes'):>13}\tUNKNOWN pooltag '{tag}', please update "
                       "pooltag.txt")
    assert rows["TagB"].split()[1] == "2"
    verbose = run(s, "!poolused 1 TagF")
    e = m.pool.tracker.entry(int.from_bytes(b"TagF", "little"))
    assert verbose[2:4] == [" " * 28 + "NonPaged" + " " * 41 + "Paged",
                            " Tag       Allocs       Frees      Diff         Used       Allocs"
                            "       Frees      Diff         Used"]
    assert verbose[5] == (f" TagF{1:>12}{1:>12}{0:>10}{e.get('NonPagedBytes'):>13}{0:>13}"
                          f"{0:>12}{0:>10}{0:>13}\tUNKNOWN pooltag 'TagF', please update "
                          "pooltag.txt")
    assert verbose[-1] == f"TOTAL{1:>12}{1:>12}{0:>10}{e.get('NonPagedBytes'):>13}{0:>13}" \
        f"{0:>12}{0:>10}{0:>13}"
    # a short tag string is a prefix; `0 T*` is a flag and a tag; case counts
    assert [line[1:5] for line in run(s, "!poolused 0 Ta")[5:-2]] == ["TagA", "TagB", "TagC"]
    assert [line[1:5] for line in run(s, "!poolused 0 *C")[5:-2]] == ["TagC"]
    assert run(s, "!poolused 0 tagc")[5:-2] == []
    total = run(s, "!poolused 0 Tag?")[-1]
    assert total.startswith("TOTAL") and total.split()[1:] == ["3", str(sum(
        m.pool.tracker.entry(int.from_bytes(t.encode(), "little")).get("NonPagedBytes")
        for t in ("TagA", "TagB"))), "1", str(header(m, blocks["c"])[1])]
    by_np = run(s, "!poolused 2")
    used = [int(line.split()[2]) for line in by_np[5:] if line and not line.startswith("TOTAL")]
    assert used == sorted(used, reverse=True) and by_np[0] == " Sorting by NonPaged Pool Consumed"


def _find_rows(out: list[str]) -> dict[int, str]:
    return {int(line[:16], 16): line for line in out if " : tag " in line}


def test_poolfind(pooled) -> None:
    m, s, blocks = pooled
    out = run(s, "!poolfind TagB")
    table = s.reader.u64(m.sym("nt!PoolBigPageTable"))
    end = table + 0x18 * s.reader.u64(m.sym("nt!PoolBigPageTableSize"))
    assert out[:3] == ["", "Scanning large pool allocation table for tag 0x42676154 (TagB) "
                       f"({table:016x} : {end:016x})", ""]
    start = s.reader.u64(m.sym("nt!MmNonPagedPoolStart"))
    end = s.reader.u64(m.sym("nt!MmNonPagedPoolEnd"))
    assert (f"Searching nonpaged pool ({start:016x} : {end:016x}) for tag 0x42676154 (TagB)"
            in out)
    rows = _find_rows(out)
    assert set(rows) == {blocks["b"], blocks["b2"]}  # data addresses
    _prev, size, _, _ = header(m, blocks["b"])
    assert rows[blocks["b"]] == (f"{blocks['b']:016x} : tag TagB, size {size - 0x10:#9x}, "
                                 "Nonpaged pool")
    assert not _find_rows(run(s, "!poolfind TagC"))
    assert set(_find_rows(run(s, "!poolfind TagC 1"))) == {blocks["c"]}
    assert set(_find_rows(run(s, '!poolfind -tag "TagC" -paged'))) == {blocks["c"]}
    out = run(s, "!poolfind BigT")
    assert _find_rows(out) == {blocks["big"]: f"{blocks['big']:016x} : tag BigT, size "
                                              "   0x2800, Nonpaged pool"}
    assert not _find_rows(run(s, "!poolfind TagF"))  # freed: only allocations are listed
    assert set(_find_rows(run(s, "!poolfind Tag?"))) == {blocks[n] for n in ("a", "b", "b2")}
    assert set(_find_rows(run(s, "!poolfind Ta*"))) == {blocks[n] for n in ("a", "b", "b2")}
    assert not _find_rows(run(s, "!poolfind tagb"))  # tags are case-sensitive
    out = run(s, "!poolfind SpcT 2")
    assert _find_rows(out) == {blocks["spc"]: f"{blocks['spc']:016x} : tag SpcT, size "
                                              "     0x30, Special pool"}


def test_poolfind_pads_a_short_tag_with_spaces() -> None:
    m = boot_probe("poolshort", {})
    s = Session(LiveTarget(m))
    irp = m.pool.allocate(NONPAGED_POOL, 0x40, "Irp ")
    out = run(s, "!poolfind Irp")
    assert "for tag 0x20707249 (Irp )" in out[1]
    assert irp in _find_rows(out)


def test_bad_input_gives_kd_errors(pooled) -> None:
    _m, s, _ = pooled
    assert run(s, "!pool") == ["Numeric expression missing from '<EOL>'"]
    assert run(s, "!pool nosuch") == ["Couldn't resolve error at 'nosuch'"]
    assert run(s, "!poolfind") == ["Numeric expression missing from '<EOL>'"]
    assert run(s, "!poolfind Tag 0 9") == ["Syntax error at '9'"]
    assert run(s, "!poolfind Tag 7") == ["Syntax error at '7'"]
    assert run(s, "!poolfind TooLong") == ["Syntax error at 'TooLong'"]
    assert run(s, "!poolfind -tag") == ["Numeric expression missing from '<EOL>'"]
    assert run(s, "!poolfind Tag -bogus") == ["Syntax error at '-bogus'"]
    assert run(s, "!poolused 1 a b") == ["Syntax error at 'b'"]
    out = run(s, "!pool 1234")
    assert out[-1] == ("Address 0000000000001234 could not be read. It may be a freed, invalid "
                       "or paged out page")


def test_corrupted_page_shows_the_damage() -> None:
    m = boot_probe("poolbad", {})
    s = Session(LiveTarget(m))
    a = m.pool.allocate(NONPAGED_POOL, 0x50, "CorA")
    b = m.pool.allocate(NONPAGED_POOL, 0x50, "CorB")
    c = m.pool.allocate(NONPAGED_POOL, 0x50, "CorC")
    assert b == a + 0x60 and c == b + 0x60
    assert run(s, f"!poolval {a:x}")[-2] == f"Pool page [ {a & ~0xFFF:016x} ] is VALID."
    b_header = m.kspace.read(b - 0x10, 16)
    m.kspace.write(b - 0x10, b"\x41" * 16)  # an overrun of a's block over b's header
    out = run(s, f"!pool {a:x}")
    bad = f"{b - 0x10:016x}"
    hit = next(line for line in out if line.startswith("*"))
    assert hit.startswith(f"*{a - 0x10:016x} size:   60") and hit.endswith("*CorA")
    assert out.index(hit) + 2 == out.index(f"{bad} doesn't look like a valid small pool "
                                           "allocation, checking to see")
    assert f"Bad previous allocation size @{bad}, last size was 6" in out
    assert f"*** Use !poolval {a & ~0xFFF:016x} for more details." in out
    assert f"Pool page [ {a & ~0xFFF:016x} ] is INVALID." in out
    # The damage runs from a's header to c's, whose chain reaches the page end again.
    assert f"[ {a - 0x10:016x} --> {c - 0x10:016x} (size = 0xc0 bytes)]: Corrupt region" in out
    val = run(s, f"!poolval {b:x}")
    assert val[0] == f"Pool page {b & ~0xFFF:016x} region is Nonpaged pool"
    assert "Analyzing linked list..." in val
    # A single flipped bit in c's PreviousSize is named as such.
    m.kspace.write(b - 0x10, b_header)
    m.kspace.write(c - 0x10, bytes([6 ^ 4]))
    out = run(s, f"!poolval {a:x}")
    # c's size still chains to the page end: only its PreviousSize field is named
    assert f"[ {c - 0x10:016x} ]: invalid previous size [ 0x2 ] should be [ 0x6 ]" in out
    assert not [line for line in out if line.endswith("Corrupt region")]
    assert f"[ {c - 0x10:016x} ] previous size 2 should be 6 (bit 2)" in out


def test_default_machine_pool(session) -> None:
    proc = int(run(session, "? poi(nt!PsActiveProcessHead)")[0].split("= ")[1].replace("`", ""),
               16)
    out = run(session, f"!pool {proc:x}")
    assert out[0] == f"Pool page {proc:016x} region is Nonpaged pool"
    hit = next(line for line in out if line.startswith("*"))
    assert hit.endswith("*Proc")
    assert out[out.index(hit) + 1] == "\t\tPooltag Proc : Process objects, Binary : nt!ps"
    # myfault's paged buffer is a big block whose page was trimmed: the table still has it.
    buf = session.reader.u64(session.symbols.address_of("myfault!PagedBuffer"))
    out = run(session, f"!pool {buf:x}")
    assert out == [f"Pool page {buf:016x} region is Paged pool",
                   f"*{buf:016x} : large page allocation, tag is Fult, size is 0x1000 bytes",
                   "\t\tOwning component : Unknown (update pooltag.txt)"]
    used = run(session, "!poolused 4 Fult")
    assert used[5].split()[:5] == ["Fult", "0", "0", "1", "4096"]
