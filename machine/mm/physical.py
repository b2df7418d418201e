"""Physical memory: sparse 4 KiB frames, handed out in a deterministic order."""

from __future__ import annotations

from collections.abc import Callable

PAGE_SIZE = 0x1000
PAGE_SHIFT = 12


class PhysicalMemory:
    """Frames exist only once allocated; reading a missing frame is an error."""

    def __init__(self, first_pfn: int = 0x100) -> None:
        self.frames: dict[int, bytearray] = {}
        self._next_pfn = first_pfn
        # Bumped whenever a paging-structure entry changes, so translation caches can tell.
        self.pt_generation = 0
        # Frames whose writes someone wants to hear about (decode caches over code pages).
        self.watched: set[int] = set()
        self.on_watched_write: Callable[[int], None] | None = None
        # The memory manager's counters hear of every frame handed out.
        self.on_frame_taken: Callable[[], None] | None = None

    def alloc_frame(self) -> int:
        pfn = self._next_pfn
        self._next_pfn += 1
        self.frames[pfn] = bytearray(PAGE_SIZE)
        if self.on_frame_taken is not None:
            self.on_frame_taken()
        return pfn

    def frame(self, pfn: int) -> bytearray:
        f = self.frames.get(pfn)
        if f is None:
            raise PhysicalAccessError(pfn << PAGE_SHIFT)
        return f

    def read(self, pa: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            off = pa & (PAGE_SIZE - 1)
            n = min(size, PAGE_SIZE - off)
            out += self.frame(pa >> PAGE_SHIFT)[off:off + n]
            pa += n
            size -= n
        return bytes(out)

    def write(self, pa: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            off = pa & (PAGE_SIZE - 1)
            n = min(len(data) - pos, PAGE_SIZE - off)
            pfn = pa >> PAGE_SHIFT
            self.frame(pfn)[off:off + n] = data[pos:pos + n]
            if pfn in self.watched and self.on_watched_write is not None:
                self.on_watched_write(pfn)
            pa += n
            pos += n

    def read_u64(self, pa: int) -> int:
        f = self.frame(pa >> PAGE_SHIFT)
        off = pa & (PAGE_SIZE - 1)
        return int.from_bytes(f[off:off + 8], "little")

    def write_u64(self, pa: int, value: int) -> None:
        self.write(pa, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))


class PhysicalAccessError(Exception):
    def __init__(self, pa: int) -> None:
        super().__init__(f"no physical frame at {pa:#x}")
        self.pa = pa
