"""Pool views: !pool, !poolval, !poolused and !poolfind.

Everything is read through memory and nt's symbols, as the pool extensions read it: the
pool ranges (nt!MmNonPagedPoolStart/End, nt!MmPagedPoolStart/End,
nt!MmSpecialPoolStart/End), a small-block page's `_POOL_HEADER` chain walked from the page
start, the big-page table (nt!PoolBigPageTable) for page-sized blocks and the per-tag
counters (nt!PoolTrackTable, `_POOL_TRACKER_TABLE`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field

from commands import fmt
from commands.errors import KdError, KdMissingExpressionError, KdSyntaxError
from commands.flow import split_arguments
from commands.io_poolscan import PoolBlock, PoolScanner, big_pages, tag_matches
from commands.pool_tags import pooltag_line, tag_text, used_description
from commands.registry import Result, command
from commands.target import MemoryAccessError

PAGE = 0x1000
UNIT = 0x10
SUPPRESS_HEADER = 0x80000000  # !pool flag bit 31: no region line, no owning component

REGIONS = (("NonPaged", "Nonpaged pool"), ("Paged", "Paged pool"), ("Special", "Special pool"))


# -- the pool as memory shows it ----------------------------------------------------------


@dataclass
class PoolEntry:
    header: int
    size: int  # bytes, header included
    previous: int  # bytes
    allocated: bool
    tag: int


@dataclass
class PageWalk:
    """A small-block page walked from its start.  `bad` is the first header that does
    not chain (None when the headers tile the page); `corrupt` the damaged range."""

    page: int
    entries: list[PoolEntry] = field(default_factory=list)
    bad: int | None = None
    problem: str = ""
    corrupt: tuple[int, int] | None = None
    bad_previous: tuple[int, int] | None = None  # (found, expected) PreviousSize, in units
    single_bit: list[str] = field(default_factory=list)


class PoolView:
    def __init__(self, s) -> None:
        self.s = s
        self.r = s.reader
        self.scanner = PoolScanner(s)

    def ranges(self) -> list[tuple[str, int, int]]:
        """(region text, start, end) of every pool range nt publishes."""
        out = []
        for prefix, text in REGIONS:
            try:
                start = self.r.u64(self.s.nt(f"Mm{prefix}PoolStart"))
                end = self.r.u64(self.s.nt(f"Mm{prefix}PoolEnd"))
            except (MemoryAccessError, KdError):  # a symbol or range the target lacks
                continue
            out.append((text, start, end))
        return out

    def region(self, address: int) -> str:
        for text, start, end in self.ranges():
            if start <= address < end:
                return text
        return "Unknown"

    def header(self, data: bytes, at: int) -> tuple[int, int, int, int]:
        """(PreviousSize, BlockSize, PoolType, PoolTag) of the header at `at` in data."""
        get = self.scanner.header_field
        return (get(data, at, "PreviousSize"), get(data, at, "BlockSize"),
                get(data, at, "PoolType"), get(data, at, "PoolTag"))

    def big_entry(self, address: int) -> PoolBlock | None:
        """The big-pool block (nt!PoolBigPageTable) holding address."""
        return next((b for b in self.scanner.big_blocks()
                     if b.body <= address < b.body + max(b.size, PAGE)), None)

    def walk(self, page: int) -> PageWalk:
        """Raises MemoryAccessError if the page cannot be read."""
        data = self.r.read(page, PAGE)
        w = PageWalk(page)
        at, previous = 0, 0
        while at < PAGE:
            prev, units, pool_type, tag = self.header(data, at)
            problem = ""
            if prev != previous:
                problem = (f"Bad previous allocation size @{fmt.hex16(page + at)}, "
                           f"last size was {previous:x}")
            elif units == 0:
                problem = f"Bad allocation size @{fmt.hex16(page + at)}, zero is invalid"
            elif at + units * UNIT > PAGE:
                problem = f"Bad allocation size @{fmt.hex16(page + at)}, too large"
            if problem:
                w.bad, w.problem = page + at, problem
                self._diagnose(w, data, at, previous, prev, units)
                break
            w.entries.append(PoolEntry(page + at, units * UNIT, prev * UNIT, pool_type != 0,
                                       tag))
            previous = units
            at += units * UNIT
        return w

    def _chains_to_end(self, data: bytes, at: int) -> bool:
        while at < PAGE:
            units = self.header(data, at)[1]
            if units == 0 or at + units * UNIT > PAGE:
                return False
            nxt = at + units * UNIT
            if nxt < PAGE and self.header(data, nxt)[0] != units:
                return False
            at = nxt
        return True

    def _diagnose(self, w: PageWalk, data: bytes, at: int, expected: int, prev: int,
                  units: int) -> None:
        """The corrupt range: from the last good header to the first header after the bad
        one from which the chain runs intact to the page end; and whether the bad header
        is a single flipped bit away from what its neighbour says."""
        start = w.entries[-1].header - w.page if w.entries else 0
        end = next((q for q in range(at + UNIT, PAGE, UNIT) if self._chains_to_end(data, q)),
                   PAGE)
        w.corrupt = (w.page + start, w.page + end)
        # A header whose size still chains on to the page end has only its PreviousSize
        # wrong: kd names the field; only such a header can be one flipped bit from right.
        intact = prev != expected and self._chains_to_end(data, at)
        if intact:
            w.bad_previous = (prev, expected)
        flipped = prev ^ expected
        if intact and flipped & (flipped - 1) == 0:
            w.single_bit.append(f"[ {fmt.hex16(w.page + at)} ] previous size {prev:x} "
                                f"should be {expected:x} (bit {flipped.bit_length() - 1})")


def entry_row(e: PoolEntry, hit: bool) -> str:
    state = "(Allocated)" if e.allocated else "(Free)"
    mark = "*" if hit else " "
    return (f"{mark}{fmt.hex16(e.header)} size: {e.size:4x} previous size: {e.previous:4x}  "
            f"{state:<11} {mark}{tag_text(e.tag)}")


def validation_lines(w: PageWalk) -> list[str]:
    """The page's verdict and, for a damaged page, kd's analysis of it."""
    if w.bad is None:
        return [f"Pool page [ {fmt.hex16(w.page)} ] is VALID.", ""]
    lines = [f"Pool page [ {fmt.hex16(w.page)} ] is INVALID.", "",
             "Analyzing linked list..."]
    if w.bad_previous is not None:
        found, expected = w.bad_previous
        lines.append(f"[ {fmt.hex16(w.bad)} ]: invalid previous size [ {found:#x} ] should be "
                     f"[ {expected:#x} ]")
    elif w.corrupt is not None:
        lo, hi = w.corrupt
        lines.append(f"[ {fmt.hex16(lo)} --> {fmt.hex16(hi)} (size = {hi - lo:#x} bytes)]: "
                     "Corrupt region")
    lines += ["", "", "Scanning for single bit errors...", ""]
    lines += w.single_bit or ["None found"]
    lines.append("")
    return lines


def unreadable_lines(address: int) -> list[str]:
    a = fmt.hex16(address)
    page = fmt.hex16(address & ~(PAGE - 1))
    return [f"{a} is not a valid large pool allocation, checking large session pool...",
            "Unable to read large session pool table (Session data is not present in mini "
            "and kernel-only dumps)",
            f"{page} is not valid pool. Checking for freed (or corrupt) pool",
            f"Address {a} could not be read. It may be a freed, invalid or paged out page"]


def contents_lines(s, e: PoolEntry) -> list[str]:
    """Flag 1: the block's first bytes after its header row, as dwords."""
    try:
        raw = s.reader.read(e.header, min(e.size, 0x20))
    except MemoryAccessError:
        return []
    out = []
    for at in range(0, len(raw), 0x10):
        words = [int.from_bytes(raw[i:i + 4], "little") for i in range(at, at + 0x10, 4)]
        out.append(f"    {fmt.hex16(e.header + at)}  " + " ".join(f"{w:08x}" for w in words))
    return out


def _flags(s, args: str) -> tuple[int, int]:
    rest = args.strip()
    if not rest:
        raise KdMissingExpressionError("")
    address, rest = s.take(rest)
    flags = 0
    if rest.strip():
        flags, rest = s.take(rest.strip())
        if rest.strip():
            raise KdSyntaxError(rest.strip())
    return address, flags


# -- !pool ----------------------------------------------------------------------------------


@command("!pool", syntax="!pool address [flags]",
         help="Pool page of an address: its blocks (headers walked from the page start), "
              "the block holding the address marked; flag 1 adds the contents, 2 only the "
              "block holding the address, 0x80000000 no region or owner lines.")
def pool_cmd(s, args: str) -> Result:
    address, flags = _flags(s, args)
    view = PoolView(s)
    lines: list[str] = []
    quiet = bool(flags & SUPPRESS_HEADER)
    region = view.region(address)
    if not quiet:
        lines.append(f"Pool page {fmt.hex16(address)} region is {region}")
    data: dict = {"address": address, "region": region, "entries": []}
    big = view.big_entry(address)
    if big is not None:
        va, nbytes, key = big.body, big.size, big.tag
        lines.append(f"*{fmt.hex16(va)} : large page allocation, tag is {tag_text(key)}, "
                     f"size is {nbytes:#x} bytes")
        if not quiet:
            lines.append(pooltag_line(key))
        data.update(large={"va": va, "size": nbytes, "tag": tag_text(key)})
        return Result(lines, data)
    page = address & ~(PAGE - 1)
    if region == "Special pool":
        return _special(s, view, address, page, lines, data, quiet)
    try:
        w = view.walk(page)
    except MemoryAccessError:
        lines += unreadable_lines(address)
        data["readable"] = False
        return Result(lines, data)
    for e in w.entries:
        hit = e.header <= address < e.header + e.size
        data["entries"].append({**asdict(e), "hit": hit})
        if flags & 2 and not hit:
            continue
        lines.append(entry_row(e, hit))
        if hit and not quiet:
            lines.append(pooltag_line(e.tag))
        if flags & 1:
            lines += contents_lines(s, e)
    if w.bad is not None:
        bad = fmt.hex16(w.bad)
        lines += [f"{bad} doesn't look like a valid small pool allocation, checking to see",
                  "if the entire page is actually part of a large page allocation...", "",
                  f"{bad} is not a valid large pool allocation, checking large session "
                  "pool...",
                  f"{bad} is freed (or corrupt) pool", w.problem, "", "***",
                  "*** An error (or corruption) in the pool was detected;",
                  "*** Attempting to diagnose the problem.", "***",
                  f"*** Use !poolval {fmt.hex16(page)} for more details.", "", ""]
        lines += validation_lines(w)
        data.update(bad=w.bad, problem=w.problem, corrupt=w.corrupt)
    return Result(lines, data)


def _special(s, view: PoolView, address: int, page: int, lines: list[str], data: dict,
             quiet: bool) -> Result:
    """A special-pool page: its header at the page start, the block at the page end."""
    try:
        raw = s.reader.read(page, PAGE)
    except MemoryAccessError:
        lines += unreadable_lines(address)
        data["readable"] = False
        return Result(lines, data)
    b = view.scanner.special_block(page, raw)
    prev = view.header(raw, 0)[0]
    # kd's special-pool row: the page (its header), the bytes from the block to the page
    # end, the block and the pool; the header's PoolType is 0 once the block is freed.
    kind = {1: "(NonPaged)", 2: "(Paged)"}.get(b.pool_type, "(Free)")
    lines.append(f"*{fmt.hex16(page)} size: {b.size:4x} data: "
                 f"{fmt.hex16(b.body)} {kind} *{tag_text(b.tag)}")
    if not quiet:
        lines.append(pooltag_line(b.tag))
    data["entries"].append({"header": page, "size": b.size, "data": b.body,
                            "previous": prev * UNIT, "allocated": b.pool_type != 0,
                            "paged": b.pool_type == 2, "tag": b.tag, "hit": True})
    return Result(lines, data)


# -- !poolval -------------------------------------------------------------------------------


@command("!poolval", syntax="!poolval address [level]",
         help="Check the pool page of an address: its headers chain from the page start to "
              "its end; a damaged page's corrupt range and single-bit errors.")
def poolval_cmd(s, args: str) -> Result:
    address, _level = _flags(s, args)
    view = PoolView(s)
    page = address & ~(PAGE - 1)
    region = view.region(address)
    lines = [f"Pool page {fmt.hex16(page)} region is {region}", ""]
    if view.big_entry(address) is not None or region == "Special pool":
        lines.append(f"{fmt.hex16(page)} is not a small pool page (no headers to validate)")
        return Result(lines, {"page": page, "region": region, "valid": None})
    try:
        w = view.walk(page)
    except MemoryAccessError:
        lines.append(f"Address {fmt.hex16(page)} could not be read. It may be a freed, "
                     "invalid or paged out page")
        return Result(lines, {"page": page, "region": region, "valid": None})
    lines += [f"Validating Pool headers for pool page: {fmt.hex16(page)}", ""]
    lines += validation_lines(w)
    return Result(lines, {"page": page, "region": region, "valid": w.bad is None,
                          "bad": w.bad, "corrupt": w.corrupt})


# -- !poolused ------------------------------------------------------------------------------

USED_SORT = {2: "NonPaged Pool Consumed", 4: "Paged Pool Consumed"}
COUNTERS = ("NonPagedAllocs", "NonPagedFrees", "NonPagedBytes",
            "PagedAllocs", "PagedFrees", "PagedBytes")


@dataclass
class TagUsage:
    tag: str
    nonpaged_allocs: int
    nonpaged_frees: int
    nonpaged_bytes: int
    paged_allocs: int
    paged_frees: int
    paged_bytes: int
    description: str = ""


def read_usage(s) -> list[TagUsage]:
    """Every tag in nt!PoolTrackTable with something counted."""
    r = s.reader
    table, count = r.u64(s.nt("PoolTrackTable")), r.u64(s.nt("PoolTrackTableSize"))
    t = "_POOL_TRACKER_TABLE"
    size = s.target.types.sizeof(t)
    raw = r.read(table, count * size)
    offsets = [r.offset(t, name) for name in COUNTERS]
    key_off = r.offset(t, "Key")
    out = []
    for i in range(count):
        at = i * size
        key = int.from_bytes(raw[at + key_off:at + key_off + 4], "little")
        if not key:
            continue
        values = [int.from_bytes(raw[at + o:at + o + 8], "little", signed=True)
                  for o in offsets]
        if any(values):
            out.append(TagUsage(tag_text(key), *values, description=used_description(key)))
    return out


def tag_filter(pattern: str):
    """!poolused's tag string: case-sensitive, `?` one character, `*` any number; a string
    shorter than four characters is a prefix (kd fills it out with `*`)."""
    pattern = pattern if "*" in pattern else pattern.ljust(4, "*")

    def match(tag: str) -> bool:
        return fnmatch.fnmatchcase(tag, pattern)
    return match


@command("!poolused", syntax="!poolused [flags [tag]]",
         help="Pool use per tag from nt!PoolTrackTable: outstanding allocations and bytes "
              "in nonpaged and paged pool; flag 1 verbose (allocs, frees), 2 sort by "
              "nonpaged bytes, 4 by paged bytes, 8 session pool; tag may use ? and *.")
def poolused_cmd(s, args: str) -> Result:
    # Flags and tag are separate words, as the extension scans them (`0 *e` is a flag and
    # a tag, not a product).
    words = args.split()
    if len(words) > 2:
        raise KdSyntaxError(" ".join(words[2:]))
    flags = s.evaluate(words[0]) if words else 0
    pattern = words[1] if len(words) > 1 else ""
    rows = [] if flags & 8 else read_usage(s)  # the machine has no session pool
    if not flags & 1:  # a tag with nothing outstanding shows only in the verbose listing
        rows = [u for u in rows if u.nonpaged_allocs != u.nonpaged_frees or u.nonpaged_bytes
                or u.paged_allocs != u.paged_frees or u.paged_bytes]
    if pattern:
        match = tag_filter(pattern)
        rows = [u for u in rows if match(u.tag)]
    sort = next((v for k, v in USED_SORT.items() if flags & k), "Tag")
    if flags & 2:
        rows.sort(key=lambda u: (-u.nonpaged_bytes, u.tag))
    elif flags & 4:
        rows.sort(key=lambda u: (-u.paged_bytes, u.tag))
    else:
        rows.sort(key=lambda u: u.tag)
    lines = [f" Sorting by {sort}", ""]
    if flags & 1:
        lines += [" " * 28 + "NonPaged" + " " * 41 + "Paged",
                  " Tag" + ("       Allocs       Frees      Diff         Used" +
                            " " * 7 + "Allocs       Frees      Diff         Used"), ""]
        for u in rows:
            lines.append(
                f" {u.tag:4}{u.nonpaged_allocs:>12}{u.nonpaged_frees:>12}"
                f"{u.nonpaged_allocs - u.nonpaged_frees:>10}{u.nonpaged_bytes:>13}"
                f"{u.paged_allocs:>13}{u.paged_frees:>12}"
                f"{u.paged_allocs - u.paged_frees:>10}{u.paged_bytes:>13}\t{u.description}")
    else:
        lines += ["               NonPaged                  Paged",
                  " Tag     Allocs         Used     Allocs         Used", ""]
        for u in rows:
            lines.append(f" {u.tag:4}{u.nonpaged_allocs - u.nonpaged_frees:>10}"
                         f"{u.nonpaged_bytes:>13}{u.paged_allocs - u.paged_frees:>11}"
                         f"{u.paged_bytes:>13}\t{u.description}")
    totals = [sum(u.nonpaged_allocs - u.nonpaged_frees for u in rows),
              sum(u.nonpaged_bytes for u in rows),
              sum(u.paged_allocs - u.paged_frees for u in rows),
              sum(u.paged_bytes for u in rows)]
    # The TOTAL row starts in the first column, its numbers under the rows' columns.
    if flags & 1:
        frees = (sum(u.nonpaged_frees for u in rows), sum(u.paged_frees for u in rows))
        allocs = (totals[0] + frees[0], totals[2] + frees[1])
        lines += ["", f"TOTAL{allocs[0]:>12}{frees[0]:>12}{totals[0]:>10}{totals[1]:>13}"
                  f"{allocs[1]:>13}{frees[1]:>12}{totals[2]:>10}{totals[3]:>13}"]
    else:
        lines += ["", f"TOTAL{totals[0]:>10}{totals[1]:>13}{totals[2]:>11}{totals[3]:>13}"]
    return Result(lines, {"sort": sort, "rows": [asdict(u) for u in rows],
                          "total": totals})


# -- !poolfind ------------------------------------------------------------------------------


# !poolfind's pool: an index into REGIONS (0 nonpaged, 1 paged, 2 special)
FIND_KINDS = {"-nonpaged": 0, "-paged": 1, "-special": 2}


def _find_args(s, args: str) -> tuple[str, int]:
    """`!poolfind Tag [PoolType]` or `!poolfind [-tag] Tag [-nonpaged|-paged|-special]`:
    the tag (quotes allow a space in it) and the pool (0 nonpaged, 1 paged, 2 special)."""
    words = split_arguments(args)
    pattern: str | None = None
    kind: int | None = None
    i = 0
    while i < len(words):
        w = words[i]
        if w.lower() == "-tag":
            if i + 1 >= len(words):
                raise KdMissingExpressionError("")
            pattern, i = words[i + 1], i + 2
            continue
        if w.lower() in FIND_KINDS:
            kind = FIND_KINDS[w.lower()]
        elif w.startswith("-"):
            raise KdSyntaxError(w)
        elif pattern is None:
            pattern = w
        elif kind is None:
            kind = s.evaluate(w)
            if kind not in range(len(REGIONS)):
                raise KdSyntaxError(w)
        else:
            raise KdSyntaxError(" ".join(words[i:]))
        i += 1
    if pattern is None:
        raise KdMissingExpressionError("")
    if len(pattern) > 4:
        raise KdSyntaxError(pattern)
    return pattern.ljust(4), kind or 0


@command("!poolfind", syntax="!poolfind tag [pooltype] | !poolfind [-tag] tag "
                              "[-nonpaged|-paged|-special]",
         help="Find allocated pool blocks with a tag (? any character, * the rest; a short "
              "tag is padded with spaces): the big-page table, then every present page of "
              "nonpaged (pooltype 0, default), paged (1) or special (2) pool.  Each row is "
              "the block's data address and size.")
def poolfind_cmd(s, args: str) -> Result:
    pattern, kind = _find_args(s, args)
    key = int.from_bytes(pattern.encode("latin-1"), "little")
    named = f"tag {key:#010x} ({pattern})"
    region_text = REGIONS[kind][1]
    view = PoolView(s)
    scanner = view.scanner
    table, count = scanner.big_table()
    big = scanner.big_blocks()
    lines = ["", f"Scanning large pool allocation table for {named} "
                 f"({fmt.hex16(table)} : {fmt.hex16(table + count * scanner.big_entry_size)})",
             ""]
    found: list[dict] = []

    def row(body: int, size: int, tag: int, large: bool) -> None:
        lines.append(f"{fmt.hex16(body)} : tag {tag_text(tag)}, size {size:#9x}, "
                     f"{region_text}")
        found.append({"address": body, "size": size, "tag": tag_text(tag), "large": large,
                      "pool": region_text})

    for b in big:
        if tag_matches(b.tag, pattern) and kind < 2 and (b.pool_type == 2) == bool(kind):
            row(b.body, b.size, b.tag, True)
    bounds = next(((lo, hi) for text, lo, hi in view.ranges() if text == region_text), None)
    if bounds is None:  # a pool the target does not publish
        lines.append("")
        return Result(lines, {"pattern": pattern, "pool": region_text, "blocks": found})
    start, end = bounds
    word = region_text.split()[0].lower()
    lines += ["", f"Searching {word} pool ({fmt.hex16(start)} : {fmt.hex16(end)}) for {named}",
              ""]
    if kind == 2:
        small = list(scanner.special_blocks(start, end))
    else:
        small = [b for b in scanner.small_blocks(start, end, big_pages(big)) if b.pool_type]
    for b in small:
        if tag_matches(b.tag, pattern):
            row(b.body, b.size - (b.body - b.header if kind < 2 else 0), b.tag, False)
    lines.append("")
    return Result(lines, {"pattern": pattern, "pool": region_text, "blocks": found})
