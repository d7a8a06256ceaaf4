"""
Fixed glibc malloc thresholds for the timing benchmarks.

PyTorch allocates CPU tensors with the C library's malloc. glibc adapts two thresholds to the allocation history: blocks
above the mmap threshold are mapped from the system and returned on free, and free memory at the top of the heap above
the trim threshold is returned too. Memory that goes back to the system faults in again, page by page, when the next
step touches it. Which tensors that hits depends on everything allocated before, so the same layer step can fault 900
times in one process and 10,000 times in the next, and the time per step moves by up to 30% with it, for one model
more than for another.

`fix_malloc_thresholds` sets both thresholds once (which also stops glibc from adapting them), so that tensors up to
32 MiB are reused from the heap and freed memory stays with the process: the rows of a benchmark are then compared on
their computation, not on the allocator's state. `model_speed.py` and `stca_overhead.py` call it unless given
`--system-malloc`; `model_speed.py` reports page faults per step next to the times.
"""

import ctypes
import platform
import resource


M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest allowed mmap threshold on 64-bit systems
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes a C int


def fix_malloc_thresholds() -> str:
    """Fix glibc's mmap and trim thresholds for this process; returns a line that says what was set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system malloc (not glibc: thresholds left as they are)"
    libc = ctypes.CDLL(None)
    settings = {M_MMAP_THRESHOLD: MMAP_THRESHOLD_BYTES, M_TRIM_THRESHOLD: TRIM_THRESHOLD_BYTES}
    if not all(libc.mallopt(parameter, value) == 1 for parameter, value in settings.items()):
        raise RuntimeError("glibc refused the malloc thresholds (mallopt returned 0); run with --system-malloc.")
    return f"glibc malloc, mmap threshold {MMAP_THRESHOLD_BYTES // 2**20} MiB, no trimming"


def page_faults() -> int:
    """Page faults of this process so far (minor, served without I/O: memory handed back and touched again)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
