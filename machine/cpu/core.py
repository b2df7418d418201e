"""The CPU: architectural state, the fetch/execute loop and memory access slow paths.

Per CPU and per address space the CPU keeps a small context (``_Ctx``):

* ``icache``: rip -> compiled closure, valid for this address space while the page tables
  are unchanged (``phys.pt_generation``) and the code frames are unwritten;
* ``ipages``: code frame -> rips in ``icache`` decoded from it (for invalidation);
* ``rtlb`` / ``wtlb``: virtual page number -> frame (bytearray) for reads / writes that
  already passed ``mem.translate``.  ``wtlb`` never holds a watched (code) frame, so a
  write through it needs no notification.

The shared :class:`DecodeCache` maps (va, pa) to a compiled instruction plus its bytes; an
icache miss translates rip, looks the entry up and checks the bytes still match, so a
whole-frame invalidation costs a re-check rather than a re-decode.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from iced_x86 import Decoder, DecoderError

from machine.cpu.compiler import M64, REG8, REG8H, REG16, REG32, REG64, compile_instruction
from machine.cpu.debugregs import DR6_INIT, DR7_INIT, RF, RW_EXECUTE, RW_READWRITE, decode_watches
from machine.cpu.errors import CpuException, DebugException
from machine.cpu.flags import RFLAGS_FIXED, flags_now
from machine.mm.paging import PageFault
from machine.mm.physical import PhysicalMemory

PAGE = 4096
MSR_FS_BASE = 0xC0000100
MSR_GS_BASE = 0xC0000101
MSR_KERNEL_GS_BASE = 0xC0000102
MAX_INSN = 15


def _canonical(va: int) -> bool:
    return va < 0x0000800000000000 or va >= 0xFFFF800000000000


class _Entry:
    __slots__ = ("fn", "raw", "length")

    def __init__(self, fn, raw: bytes, length: int) -> None:
        self.fn = fn
        self.raw = raw
        self.length = length


class DecodeCache:
    """Decoded/compiled instructions shared by all CPUs of one machine.

    Registers itself as ``phys.on_watched_write``; frames holding code that some CPU has
    cached are in ``phys.watched``, and a write to one (through any address space, any CPU
    or the physical memory directly) evicts that frame's instructions from every CPU.
    """

    def __init__(self, phys: PhysicalMemory) -> None:
        self.phys = phys
        self.entries: dict[tuple[int, int], _Entry] = {}
        self._cpus: weakref.WeakSet[Cpu] = weakref.WeakSet()
        phys.on_watched_write = self._on_watched_write

    def flush(self) -> None:
        """Forget every decoded instruction."""
        self.entries.clear()
        self.phys.watched.clear()
        for cpu in list(self._cpus):
            cpu._flush_all_icaches()

    def _on_watched_write(self, pfn: int) -> None:
        self.phys.watched.discard(pfn)
        for cpu in list(self._cpus):
            cpu._evict_frame(pfn)

    def _watch(self, pfn: int) -> None:
        watched = self.phys.watched
        if pfn not in watched:
            watched.add(pfn)
            for cpu in list(self._cpus):
                cpu._drop_wtlbs()

    def decode(self, mem, va: int, pa: int) -> tuple[_Entry, int | None]:
        """Decode and compile the instruction at va (physical pa), or reuse a cached one.

        Returns the entry and the second frame's pfn if the instruction crosses a page.
        Raises PageFault if the bytes run into a page that cannot be fetched.
        """
        frames = self.phys.frames
        fr = frames[pa >> 12]
        off = pa & 0xFFF
        room = PAGE - off
        key = (va, pa)
        entry = self.entries.get(key)
        if entry is not None:
            n = entry.length
            if n <= room:
                if fr[off:off + n] == entry.raw:
                    return entry, None
            else:
                pa2 = mem.translate((va + room) & M64, execute=True)
                if fr[off:] + frames[pa2 >> 12][:n - room] == entry.raw:
                    return entry, pa2 >> 12
        data = bytes(fr[off:off + MAX_INSN])
        pfn2 = None
        dec = Decoder(64, data, ip=va)
        ins = dec.decode()
        if ins.is_invalid and len(data) < MAX_INSN and \
                dec.last_error == DecoderError.NO_MORE_BYTES:
            # The instruction continues on the next page: fetch it (this may fault).
            pa2 = mem.translate((va + room) & M64, execute=True)
            pfn2 = pa2 >> 12
            data += bytes(frames[pfn2][:MAX_INSN - len(data)])
            ins = Decoder(64, data, ip=va).decode()
        fn = compile_instruction(ins)
        if ins.is_invalid:
            # Which bytes made it invalid is not known: never reuse it from the table.
            return _Entry(fn, b"", 0), (pfn2 if len(data) > room else None)
        n = ins.len
        if n <= room:
            pfn2 = None
        entry = _Entry(fn, data[:n], n)
        self.entries[key] = entry
        return entry, pfn2


class _Ctx:
    __slots__ = ("icache", "ipages", "rtlb", "wtlb", "gen", "__weakref__")

    def __init__(self, gen: int) -> None:
        self.icache: dict[int, Callable] = {}
        self.ipages: dict[int, set[int]] = {}
        self.rtlb: dict[int, bytearray] = {}
        self.wtlb: dict[int, bytearray] = {}
        self.gen = gen

    def clear(self, gen: int) -> None:
        self.icache.clear()
        self.ipages.clear()
        self.rtlb.clear()
        self.wtlb.clear()
        self.gen = gen


_NAMES: dict[str, tuple[int, int, int]] = {}  # name -> (index, shift, mask)
for _i, _n in enumerate(REG64):
    _NAMES[_n] = (_i, 0, M64)
for _names, _mask in ((REG32, 0xFFFFFFFF), (REG16, 0xFFFF), (REG8, 0xFF)):
    for _i, _n in enumerate(_names):
        _NAMES[_n] = (_i, 0, _mask)
for _i in range(8, 16):
    _NAMES[f"r{_i}b"] = (_i, 0, 0xFF)
for _i, _n in enumerate(REG8H):
    _NAMES[_n] = (_i, 8, 0xFF)


class Cpu:
    """One logical processor executing x64 code in 64-bit mode at CPL 0."""

    def __init__(self, number: int, cache: DecodeCache) -> None:
        self.number = number
        self.regs: list[int] = [0] * 16
        self.rip = 0
        self._fl = 0x202
        self._lz: tuple | None = None
        self.cr0 = 0x80050033
        self.cr2 = 0
        self.cr3 = 0
        self.cr4 = 0x000506F8
        self.gs_base = 0
        self.fs_base = 0
        self.kernel_gs_base = 0
        self._cr8 = 0
        self.cr8_read: Callable[[], int] = lambda: self._cr8
        self.cr8_write: Callable[[int], None] = self._default_cr8_write
        # Optional hooks: msr_read(msr) -> value, msr_write(msr, value); None -> #GP(0) for
        # MSRs the CPU does not implement itself (FS_BASE, GS_BASE, KERNEL_GS_BASE).
        self.msr_read: Callable[[int], int] | None = None
        self.msr_write: Callable[[int, int], None] | None = None
        # Optional hook called by `mov cr3, reg` (after cr3 is set and rip advanced), so
        # that the kernel can switch `mem` to the matching address space.
        self.cr3_write: Callable[[int], None] | None = None
        self.instructions_retired = 0
        # Debug registers (index 4 and 5 unused, as DR4/DR5 alias DR6/DR7).  While a slot
        # is enabled, `step`/`run` are the checking versions below; `_dwatch` maps each
        # watched data page to its slots (such pages stay out of the translation caches,
        # so every access to them takes the checking slow path) and `_xwatch` maps
        # watched instruction addresses to their slot.
        self.dr = [0, 0, 0, 0, 0, 0, DR6_INIT, DR7_INIT]
        self._dwatch: dict[int, tuple] = {}
        self._xwatch: dict[int, int] = {}
        self._dhits: list[tuple[int, int, int, bool]] = []  # (slot, va, size, write)
        self.in_instruction = False  # set while a checking step executes an instruction
        self._cache = cache
        self._phys = cache.phys
        self._frames = cache.phys.frames
        self._ctxs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._mem = None
        self._ctx = _Ctx(self._phys.pt_generation)
        self._bind(self._ctx)
        cache._cpus.add(self)

    def _default_cr8_write(self, v: int) -> None:
        self._cr8 = v

    # -- public state ---------------------------------------------------------------------

    @property
    def rflags(self) -> int:
        return flags_now(self)

    @rflags.setter
    def rflags(self, value: int) -> None:
        self._fl = (value & M64) | RFLAGS_FIXED
        self._lz = None

    @property
    def mem(self):
        return self._mem

    @mem.setter
    def mem(self, space) -> None:
        if space is self._mem:
            return
        self._mem = space
        if space is None:
            ctx = _Ctx(self._phys.pt_generation)
        else:
            ctx = self._ctxs.get(space)
            if ctx is None:
                ctx = _Ctx(self._phys.pt_generation)
                self._ctxs[space] = ctx
            cr3 = getattr(space, "cr3", None)
            if isinstance(cr3, int):
                self.cr3 = cr3
        self._ctx = ctx
        self._bind(ctx)

    def get(self, name: str) -> int:
        name = name.lower()
        spec = _NAMES.get(name)
        if spec is not None:
            i, shift, mask = spec
            return (self.regs[i] >> shift) & mask
        if name in ("rip", "eip"):
            return self.rip if name == "rip" else self.rip & 0xFFFFFFFF
        if name in ("rflags", "efl", "eflags"):
            return self.rflags
        if name == "cr8":
            return self.cr8_read()
        if name in ("cr0", "cr2", "cr3", "cr4", "gs_base", "fs_base", "kernel_gs_base"):
            return getattr(self, name)
        raise KeyError(name)

    def set(self, name: str, value: int) -> None:
        name = name.lower()
        spec = _NAMES.get(name)
        if spec is not None:
            i, shift, mask = spec
            value &= mask
            if mask == 0xFFFFFFFF or mask == M64:
                self.regs[i] = value  # 32-bit writes zero-extend, as in hardware
            else:
                self.regs[i] = (self.regs[i] & ~(mask << shift) & M64) | (value << shift)
            return
        if name == "rip":
            self.rip = value & M64
        elif name in ("rflags", "efl", "eflags"):
            self.rflags = value
        elif name == "cr8":
            self.cr8_write(value)
        elif name in ("cr0", "cr2", "cr4", "gs_base", "fs_base", "kernel_gs_base"):
            setattr(self, name, value & M64)
        elif name == "cr3":
            self.cr3 = value & M64
            self.flush_tlb()
        else:
            raise KeyError(name)

    def push(self, value: int) -> None:
        """Push 8 bytes (faults as CpuException with rip = the current rip)."""
        sp = (self.regs[4] - 8) & M64
        try:
            self._wr(sp, 8, value & M64)
        except PageFault as e:
            raise self._page_fault(e, self.rip) from None
        except CpuException as e:
            if e.rip is None:
                e.rip = self.rip
            raise
        self.regs[4] = sp

    def pop(self) -> int:
        """Pop 8 bytes (faults as CpuException with rip = the current rip)."""
        sp = self.regs[4]
        try:
            v = self._rd(sp, 8)
        except PageFault as e:
            raise self._page_fault(e, self.rip) from None
        except CpuException as e:
            if e.rip is None:
                e.rip = self.rip
            raise
        self.regs[4] = (sp + 8) & M64
        return v

    def flush_tlb(self) -> None:
        """Drop cached translations and decoded code for the current address space."""
        self._ctx.clear(self._phys.pt_generation)
        self._gen = self._ctx.gen

    # -- execution ------------------------------------------------------------------------

    def step(self) -> None:
        """Execute exactly one instruction at rip."""
        rip = self.rip
        if self._phys.pt_generation != self._gen:
            self.flush_tlb()
        fn = self._icache.get(rip)
        try:
            if fn is None:
                fn = self._fetch(rip)
            self.rip = fn(self)
        except PageFault as e:
            raise self._page_fault(e, rip) from None
        except CpuException as e:
            if e.rip is None:
                e.rip = rip
            raise
        self.instructions_retired += 1

    def run(self, count: int) -> int:
        """Execute up to ``count`` instructions (like calling step() repeatedly).

        Exceptions propagate exactly as from step(); returns the number executed.
        """
        phys = self._phys
        done = 0
        try:
            while done < count:
                rip = self.rip
                if phys.pt_generation != self._gen:
                    self.flush_tlb()
                fn = self._icache.get(rip)
                if fn is None:
                    fn = self._fetch(rip)
                self.rip = fn(self)
                done += 1
        except PageFault as e:
            raise self._page_fault(e, rip) from None
        except CpuException as e:
            if e.rip is None:
                e.rip = rip
            raise
        finally:
            self.instructions_retired += done
        return done

    # -- debug registers --------------------------------------------------------------------

    def set_debug_registers(self, addresses: list[int], dr7: int) -> None:
        """Load DR0-DR3 and DR7 (what `mov drN, reg` does), and start or stop checking."""
        old_pages = set(self._dwatch)
        self.dr[0:4] = [a & M64 for a in addresses[:4]]
        self.dr[7] = dr7
        dwatch: dict[int, list] = {}
        xwatch: dict[int, int] = {}
        for w in decode_watches(self.dr):
            if w.rw == RW_EXECUTE:
                xwatch.setdefault(w.address, w.slot)
                continue
            entry = (w.slot, w.address, w.address + w.size, w.rw == RW_READWRITE)
            dwatch.setdefault(w.address >> 12, []).append(entry)
        self._dwatch = {vpn: tuple(v) for vpn, v in dwatch.items()}
        self._xwatch = xwatch
        # Newly watched pages leave the translation caches of every address space.
        for ctx in self._all_ctxs():
            for vpn in set(self._dwatch) - old_pages:
                ctx.rtlb.pop(vpn, None)
                ctx.wtlb.pop(vpn, None)
        if self._dwatch or self._xwatch:
            # Instance attributes shadow the plain methods: no cost while nothing is watched.
            self.step = self._step_checked  # type: ignore[method-assign]
            self.run = self._run_checked  # type: ignore[method-assign]
        else:
            self.__dict__.pop("step", None)
            self.__dict__.pop("run", None)
        self._dhits.clear()

    def _check_data(self, va: int, n: int, write: bool) -> None:
        """Record the watched slots an access of n bytes at va meets (hits are traps: they
        are reported once the instruction completes)."""
        last = (va + n - 1) >> 12
        for vpn in (va >> 12, last) if last != va >> 12 else (last,):
            for slot, lo, hi, rw in self._dwatch.get(vpn, ()):
                if va < hi and lo < va + n and (write or rw):
                    self._dhits.append((slot, va, n, write))

    def _step_checked(self) -> None:
        """step() with the debug registers armed: an instruction breakpoint faults before
        the instruction (unless RF is set), data breakpoints trap after it."""
        rip = self.rip
        hits = self._dhits
        hits.clear()
        if self._fl & RF:
            self._fl &= ~RF
        else:
            slot = self._xwatch.get(rip)
            if slot is not None:
                self.dr[6] |= 1 << slot
                raise DebugException(rip, ((slot, rip, 1, "execute"),), fault=True)
        self.in_instruction = True
        try:
            Cpu.step(self)
        except BaseException:
            hits.clear()  # a faulting instruction did not complete: no trap
            raise
        finally:
            self.in_instruction = False
        if self.rip == rip and getattr(self._icache.get(rip), "rep_string", False):
            self._fl |= RF  # iterations remain: the resumed instruction must not re-hit
        if hits:
            raise self._data_trap()

    def _data_trap(self) -> DebugException:
        """The #DB trap for the recorded hits: one per slot (a write before a read)."""
        best: dict[int, tuple[int, int, int, bool]] = {}
        for hit in self._dhits:
            if hit[0] not in best or (hit[3] and not best[hit[0]][3]):
                best[hit[0]] = hit
        self._dhits.clear()
        for slot in best:
            self.dr[6] |= 1 << slot
        return DebugException(self.rip, tuple(
            (slot, va, n, "write" if write else "read")
            for slot, (_, va, n, write) in sorted(best.items())))

    def take_data_hits(self) -> tuple[tuple[int, int, int, str], ...]:
        """Hits recorded outside an instruction (push/pop on behalf of kernel routines);
        sets their DR6 bits and forgets them."""
        if not self._dhits:
            return ()
        return self._data_trap().hits

    def _run_checked(self, count: int) -> int:
        for _ in range(count):
            self._step_checked()
        return count

    def _page_fault(self, e: PageFault, rip: int) -> CpuException:
        self.cr2 = e.va
        return CpuException(14, e.error_code, rip, e.va, e.write)

    def _fetch(self, rip: int):
        if not _canonical(rip):
            raise CpuException(13, 0, rip)
        mem = self._mem
        if mem is None:
            raise RuntimeError(f"cpu {self.number}: no address space")
        pa = mem.translate(rip, execute=True)
        entry, pfn2 = self._cache.decode(mem, rip, pa)
        cache = self._cache
        ipages = self._ipages
        pfn = pa >> 12
        cache._watch(pfn)
        ipages.setdefault(pfn, set()).add(rip)
        if pfn2 is not None:
            cache._watch(pfn2)
            ipages.setdefault(pfn2, set()).add(rip)
        self._icache[rip] = entry.fn
        return entry.fn

    # -- context bookkeeping ---------------------------------------------------------------

    def _bind(self, ctx: _Ctx) -> None:
        gen = self._phys.pt_generation
        if ctx.gen != gen:
            ctx.clear(gen)
        self._icache = ctx.icache
        self._ipages = ctx.ipages
        self._rtlb = ctx.rtlb
        self._wtlb = ctx.wtlb
        self._gen = ctx.gen

    def _all_ctxs(self):
        yield self._ctx
        for ctx in list(self._ctxs.values()):
            if ctx is not self._ctx:
                yield ctx

    def _evict_frame(self, pfn: int) -> None:
        for ctx in self._all_ctxs():
            rips = ctx.ipages.pop(pfn, None)
            if rips:
                icache = ctx.icache
                for rip in rips:
                    icache.pop(rip, None)

    def _drop_wtlbs(self) -> None:
        for ctx in self._all_ctxs():
            ctx.wtlb.clear()

    def _flush_all_icaches(self) -> None:
        for ctx in self._all_ctxs():
            ctx.icache.clear()
            ctx.ipages.clear()

    # -- memory slow paths (called from compiled code) -------------------------------------

    def _rframe(self, va: int) -> bytearray:
        """The frame holding va (readable); fills the read cache."""
        vpn = va >> 12
        fr = self._rtlb.get(vpn)
        if fr is None:
            if not _canonical(va):
                raise CpuException(13, 0)
            pa = self._mem.translate(va)
            fr = self._frames[pa >> 12]
            if vpn not in self._dwatch:
                self._rtlb[vpn] = fr
        return fr

    def _wframe(self, va: int) -> bytearray | None:
        """Validate a write to va; the frame if it may be written directly, else None."""
        vpn = va >> 12
        fr = self._wtlb.get(vpn)
        if fr is None:
            if not _canonical(va):
                raise CpuException(13, 0)
            pa = self._mem.translate(va, write=True)
            pfn = pa >> 12
            fr = self._frames[pfn]
            if pfn in self._phys.watched:
                if vpn not in self._dwatch:
                    self._rtlb[vpn] = fr
                return None
            if vpn not in self._dwatch:
                self._rtlb[vpn] = fr
                self._wtlb[vpn] = fr
        return fr

    def _rd(self, va: int, n: int) -> int:
        va &= M64
        if self._dwatch:
            self._check_data(va, n, False)
        off = va & 0xFFF
        if off + n <= PAGE:
            fr = self._rframe(va)
            return int.from_bytes(fr[off:off + n], "little")
        first = PAGE - off
        va2 = (va + first) & M64
        f1 = self._rframe(va)
        f2 = self._rframe(va2)
        return int.from_bytes(f1[off:] + f2[:n - first], "little")

    def _rdw(self, va: int, n: int) -> int:
        """Read for a read-modify-write: checks write access to every byte first."""
        va &= M64
        off = va & 0xFFF
        self._wframe(va)
        if off + n > PAGE:
            self._wframe((va + PAGE - off) & M64)
        return self._rd(va, n)

    def _wr(self, va: int, n: int, value: int) -> None:
        va &= M64
        if self._dwatch:
            self._check_data(va, n, True)
        off = va & 0xFFF
        data = value.to_bytes(n, "little")
        if off + n <= PAGE:
            fr = self._wframe(va)
            if fr is not None:
                fr[off:off + n] = data
            else:
                self._phys.write(self._mem.translate(va, write=True), data)
            return
        first = PAGE - off
        va2 = (va + first) & M64
        f1 = self._wframe(va)
        f2 = self._wframe(va2)
        if f1 is not None:
            f1[off:] = data[:first]
        else:
            self._phys.write(self._mem.translate(va, write=True), data[:first])
        if f2 is not None:
            f2[:n - first] = data[first:]
        else:
            self._phys.write(self._mem.translate(va2, write=True), data[first:])

    # -- system instructions ---------------------------------------------------------------

    def _write_cr3(self, value: int) -> None:
        self.cr3 = value
        self.flush_tlb()
        if self.cr3_write is not None:
            self.cr3_write(value)

    def _rdmsr(self, msr: int) -> int:
        if msr == MSR_GS_BASE:
            return self.gs_base
        if msr == MSR_FS_BASE:
            return self.fs_base
        if msr == MSR_KERNEL_GS_BASE:
            return self.kernel_gs_base
        if self.msr_read is None:
            raise CpuException(13, 0)
        return self.msr_read(msr) & M64

    def _wrmsr(self, msr: int, value: int) -> None:
        if msr in (MSR_GS_BASE, MSR_FS_BASE, MSR_KERNEL_GS_BASE):
            if not _canonical(value):
                raise CpuException(13, 0)
            attr = {MSR_GS_BASE: "gs_base", MSR_FS_BASE: "fs_base",
                    MSR_KERNEL_GS_BASE: "kernel_gs_base"}[msr]
            setattr(self, attr, value)
            return
        if self.msr_write is None:
            raise CpuException(13, 0)
        self.msr_write(msr, value)

    def __repr__(self) -> str:
        r = self.regs
        return (f"<Cpu {self.number} rip={self.rip:#x} rax={r[0]:#x} rsp={r[4]:#x} "
                f"rflags={self.rflags:#x}>")


__all__ = ["Cpu", "DecodeCache"]
