"""abba-deadlock: two hbcache.sys system threads take two KMUTEXes in opposite orders and
wait for each other forever (a hang, broken into at tick 200)."""

from __future__ import annotations

import pytest
from iced_x86 import Mnemonic

from machine.types.view import Struct
from tests.library import labkit
from tests.machine.probe import decoded

NAME = "abba-deadlock"
SOLUTION = ["!stacks 2 hbcache", "!process 0 7 System", "ln hbcache!IndexMutex",
            "uf hbcache!HbcFlushWorker", "uf hbcache!HbcWriteCheckpoint"]
RIGHT = ".submit driver=hbcache.sys routine=HbcWriteCheckpoint cause=deadlock"
WRONG = ".submit driver=nt routine=KeWaitForSingleObject cause=lock-contention"
WAITING = 5  # KTHREAD_STATE Waiting


def _wait_return(m, routine: str, nth: int) -> int:
    """The return address of the routine's `nth` call to KeWaitForSingleObject."""
    start = m.sym(f"hbcache!{routine}")
    calls = [c for c in decoded(m, start, Mnemonic.CALL, 0x100)
             if c.near_branch_target == m.sym("nt!KeWaitForSingleObject")]
    return calls[nth].next_ip


def _on_stack(m, ethread: int, address: int) -> bool:
    kt = Struct(m.kspace, "_KTHREAD", ethread)
    sp, top = kt.get("KernelStack"), kt.get("InitialStack")
    return any(m.kspace.read_u64(a) == address for a in range(sp, top, 8))


def _worker(m, routine: str) -> int:
    start = m.sym(f"hbcache!{routine}")
    return next(t.ethread for t in m.threads
                if Struct(m.kspace, "_ETHREAD", t.ethread).get("Win32StartAddress") == start)


@pytest.fixture(scope="module")
def m():
    return labkit.stopped(NAME).machine


def test_the_two_threads_each_own_the_mutex_the_other_waits_for(m):
    assert m.bugcheck is None
    index, journal = m.sym("hbcache!IndexMutex"), m.sym("hbcache!JournalMutex")
    flush, checkpoint = _worker(m, "HbcFlushWorker"), _worker(m, "HbcCheckpointWorker")
    owner = {mx: Struct(m.kspace, "_KMUTANT", mx).get("OwnerThread") for mx in (index, journal)}
    assert owner == {index: flush, journal: checkpoint}
    for thread, waits_on in ((flush, journal), (checkpoint, index)):
        kt = Struct(m.kspace, "_KTHREAD", thread)
        assert kt.get("State") == WAITING and kt.get("WaitReason") == 0  # Executive
        assert Struct(m.kspace, "_KWAIT_BLOCK", kt.get("WaitBlockList")).get("Object") \
            == waits_on
    # Each is stuck in its second wait: in the routine that took the first mutex.
    assert _on_stack(m, flush, _wait_return(m, "HbcFlushDirtyBlocks", 1))
    assert _on_stack(m, checkpoint, _wait_return(m, "HbcWriteCheckpoint", 1))
    # The flush thread had been flushing (index, then journal) before it hung.
    assert m.kspace.read_u64(m.sym("hbcache!Flushes")) > 10
    assert m.kspace.read_u64(m.sym("hbcache!Checkpoints")) == 0


def test_the_solution_reveals_the_key_and_is_graded(m, tmp_path):
    flush, checkpoint = _worker(m, "HbcFlushWorker"), _worker(m, "HbcCheckpointWorker")
    index, journal = m.sym("hbcache!IndexMutex"), m.sym("hbcache!JournalMutex")
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    stacks, process, ln, worker, checkpoint_code = labkit.outputs(out)[1:6]
    assert "hbcache!HbcFlushDirtyBlocks+0x" in stacks
    assert "hbcache!HbcWriteCheckpoint+0x" in stacks
    # !process shows each wait's mutant and its owner: the cycle
    assert f"{journal:016x}  Mutant - owning thread {checkpoint:016x}" in process
    assert f"{index:016x}  Mutant - owning thread {flush:016x}" in process
    assert "hbcache!IndexMutex" in ln
    # The flush path calls the two routines that take the index first ...
    assert "call    hbcache!HbcFlushDirtyBlocks" in worker
    assert "call    hbcache!HbcEvictBlocks" in worker
    # ... and the checkpoint takes the journal, then the index.
    order = [line for line in checkpoint_code.splitlines()
             if "lea     rcx,[hbcache!" in line and "Mutex" in line]
    assert "JournalMutex" in order[0] and "IndexMutex" in order[1]
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
