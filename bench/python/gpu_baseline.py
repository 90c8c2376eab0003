"""The baseline a user would write to bring embedding rows to the GPU: numpy
memmap fancy indexing followed by torch.from_numpy(...).cuda().

Used beside `gpu-pipeline` (gpu-bridge/src/bin/gpu-pipeline.rs) in the same
device run; the tables have the same shapes (f16 rows, d = 1024 with 500 K
rows, d = 2048 with 250 K rows: 1.02 GB each).

Two modes:

- warm (the default): the tables live in the page cache (every page touched
  once before measuring). Output, after a `torch ..., numpy ..., device ...`
  line:

      dim  batch     keys   Mrows/s    GB/s   p50 ms   p99 ms
     1024   1024  uniform      1.69    3.46    0.572    0.652

  (docs/plots/gpu_batches.py parses these lines: keep them as they are.)
  Zipf keys here are numpy's unbounded zipf(1.1) - 1, clipped to the last row.

- cold (`--cold`: after the warm figures; `--only-cold`: instead of them),
  set against `gpu-pipeline --nvme-only` (rows read with O_DIRECT io_uring
  into pinned memory). The .npy files stay on the disk under --dir (not
  tmpfs) and the page cache is dropped before every figure: the memmap is
  unmapped (the kernel does not evict pages a process maps), the file is
  fsync'ed and posix_fadvise(POSIX_FADV_DONTNEED)'ed, and when running as
  root os.sync() + `echo 3 > /proc/sys/vm/drop_caches` is tried as well;
  then the file is mapped again and measured as in warm mode (the fancy
  indexing's page faults read the rows from disk, one synchronous fault at a
  time). Two access variants, in turn (`--cold-access`): `readaround`, the
  mapping as np.load makes it (a fault reads up to the device's
  read_ahead_kb around the row: with 8 MiB, a few hundred faults pull in the
  whole table), and `random`, the mapping madvise(MADV_RANDOM)'ed (one page
  per fault: what a user who knows about read-around would add). Keys are
  drawn fresh for every batch over the whole table: uniform, or Zipf(1.1) as
  gpu-pipeline draws them (rank r with probability proportional to
  (r + 1)^-1.1 over the table's rows, row r = rank r: the hot rows come
  first). Rows read stay cached, so the cache warms while measuring; each
  line says how much: the distinct rows the figure touched, and the file's
  pages resident in the page cache (mincore) after the drop and after the
  figure. A `cold: ...` line per table first (file, file system, data
  offset: a .npy header is 128 bytes, so 4 KiB rows straddle two pages,
  which scone's files do not; read_ahead_kb), then a header and one line
  per figure, each starting with `cold`:

    cold   dim  batch     keys      n    Mrows/s     GB/s    p50 ms    p99 ms  uniq%  touched%  resid0%  resid%     access  drop
    cold  1024   1024  uniform     25    0.02340   0.0480    40.000    50.000   99.9      5.12     0.00   12.00     random  fadvise+drop_caches

  n: batches measured (at least --cold-min-batches, then until --seconds);
  Mrows/s, GB/s: delivered positions (duplicates included) per second and
  their bytes, like gpu-pipeline's columns; p50 / p99: latency of one batch
  (gather + .cuda() + synchronize); uniq%: mean distinct rows per batch over
  the batch; touched%: distinct rows touched during the figure over the
  table's rows; resid0% / resid%: the file's pages in the page cache after
  the drop and after the figure (`-` where mincore is not available);
  access: `readaround` or `random`; drop: the method that ran (`fadvise`,
  `fadvise+drop_caches`, or `fadvise(drop_caches:ERROR)` where root could
  not write drop_caches).

`--host-only`: no torch and no GPU (numpy gather only), to check the data
path on a machine without one; its lines start with `host` / `cold-host`
instead so that no plot script takes them for GPU figures. `--rows N`: rows
of the d = 1024 table (d = 2048 gets N / 2), for small local checks.

    python3 bench/python/gpu_baseline.py --dir /tmp/gpu-baseline --seconds 1
    python3 bench/python/gpu_baseline.py --dir /tmp/gpu-baseline --seconds 1 --only-cold
    python3 bench/python/gpu_baseline.py --dir /tmp/gb --rows 20000 --seconds 0.2 --cold --host-only  # no GPU
"""
import argparse
import ctypes
import ctypes.util
import gc
import mmap
import os
import time

import numpy as np

BATCHES = [1024, 4096, 16384]
ZIPF_S = 1.1


def make_rows(path, rows, dim, seed):
    if os.path.exists(path):
        mm = np.load(path, mmap_mode="r")
        ok = mm.shape == (rows, dim) and mm.dtype == np.float16
        del mm
        if ok:
            return
        os.remove(path)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, dim))
    rng = np.random.default_rng(seed)
    step = 65536
    for start in range(0, rows, step):
        n = min(step, rows - start)
        mm[start:start + n] = rng.standard_normal((n, dim), dtype=np.float32).astype(np.float16)
    mm.flush()
    del mm


def data_offset(path):
    """Byte offset of the array data in a .npy file (after its header)."""
    mm = np.load(path, mmap_mode="r")
    off = int(mm.offset)
    del mm
    return off


# ---------------------------------------------------------------- page cache

_libc = None


def _lib():
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.restype = ctypes.c_int
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        _libc = libc
    return _libc


def resident_fraction(path):
    """Fraction of the file's pages in the page cache (mincore on a fresh
    read-only shared mapping, which faults nothing in), or None."""
    try:
        libc = _lib()
        size = os.path.getsize(path)
        if size == 0:
            return 0.0
        page = mmap.PAGESIZE
        pages = (size + page - 1) // page
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr is None or addr == ctypes.c_void_p(-1).value:
                return None
            try:
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(addr, size, vec) != 0:
                    return None
                return int(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1)) / pages
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return None


def drop_file_cache(path):
    """Drops the file's pages from the page cache; returns the method that ran.
    The file must not be mapped by this process (mapped pages stay)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages are not dropped by DONTNEED
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    method = "fadvise"
    if os.geteuid() == 0:
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            method += "+drop_caches"
        except OSError as e:
            method += f"(drop_caches:{type(e).__name__})"
    return method


def read_ahead_kb(dev):
    """The block device's read_ahead_kb (the mmap read-around window), or '?'."""
    name = os.path.basename(os.path.realpath(dev)) if dev.startswith("/dev/") else ""
    for cand in [name, name.rstrip("0123456789"), name.rstrip("0123456789").rstrip("p")]:
        try:
            with open(f"/sys/class/block/{cand}/queue/read_ahead_kb") as f:
                return f.read().strip()
        except OSError:
            continue
    return "?"


def mount_of(path):
    """(device, fstype, mount point) of the file system holding path."""
    real = os.path.realpath(path)
    best = ("?", "?", "")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                mnt = mnt.replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[2]):
                    best = (dev, fstype, mnt)
    except OSError:
        pass
    return best


# ---------------------------------------------------------------- keys

def zipf_sampler(rows, s=ZIPF_S):
    """gpu-pipeline's Zipf: rank r in [0, rows) with p ~ (r + 1)^-s."""
    cdf = np.cumsum(np.arange(1, rows + 1, dtype=np.float64) ** -s)

    def draw(rng, n):
        u = rng.random(n) * cdf[-1]
        return np.minimum(np.searchsorted(cdf, u, side="left"), rows - 1)

    return draw


# ---------------------------------------------------------------- measuring

def device_copy(host_only):
    """The per-batch step after the gather: host-to-device copy + wait."""
    if host_only:
        return lambda x: x
    import torch

    def copy(x):
        t = torch.from_numpy(x).cuda()   # pageable host-to-device copy
        torch.cuda.synchronize()
        return t

    return copy


def measure(mm, batch, seconds, rng, zipf, to_device):
    rows = mm.shape[0]
    lat = []
    done = 0
    t_end = time.perf_counter() + seconds
    t_start = time.perf_counter()
    while time.perf_counter() < t_end or len(lat) < 5:
        if zipf:
            idx = np.minimum(rng.zipf(1.1, batch) - 1, rows - 1)
        else:
            idx = rng.integers(0, rows, batch)
        t0 = time.perf_counter()
        x = mm[idx]                      # numpy fancy indexing: a gather into a new array
        t = to_device(x)
        lat.append(time.perf_counter() - t0)
        done += batch
        del t
    total = time.perf_counter() - t_start
    lat.sort()
    row_bytes = mm.shape[1] * mm.dtype.itemsize
    return done / total, done * row_bytes / total, lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def measure_cold(mm, batch, seconds, min_batches, rng, draw, to_device):
    """Like measure, keys from draw(rng, batch); also counts the distinct rows
    touched and the mean unique fraction per batch."""
    rows = mm.shape[0]
    seen = np.zeros(rows, dtype=bool)
    lat = []
    uniq = 0.0
    done = 0
    t_end = time.perf_counter() + seconds
    t_start = time.perf_counter()
    while time.perf_counter() < t_end or len(lat) < min_batches:
        idx = draw(rng, batch)
        t0 = time.perf_counter()
        x = mm[idx]                      # page faults read the rows from disk
        t = to_device(x)
        lat.append(time.perf_counter() - t0)
        done += batch
        del t, x
        seen[idx] = True
        uniq += len(np.unique(idx)) / batch
    total = time.perf_counter() - t_start
    n = len(lat)
    lat.sort()
    row_bytes = mm.shape[1] * mm.dtype.itemsize
    return {
        "n": n,
        "rps": done / total,
        "bps": done * row_bytes / total,
        "p50": lat[n // 2],
        "p99": lat[min(n - 1, int(n * 0.99))],
        "uniq": uniq / n,
        "touched": int(np.count_nonzero(seen)) / rows,
    }


def pct(x):
    return "-" if x is None else f"{x * 100:.2f}"


def cold_header(tag):
    return (f"{tag:<5} {'dim':>4} {'batch':>6} {'keys':>8} {'n':>6} {'Mrows/s':>10} {'GB/s':>8} {'p50 ms':>9} "
            f"{'p99 ms':>9} {'uniq%':>6} {'touched%':>9} {'resid0%':>8} {'resid%':>7} {'access':>10}  drop")


def cold_line(tag, dim, batch, keys, r, resid0, resid, access, method):
    return (f"{tag:<5} {dim:>4} {batch:>6} {keys:>8} {r['n']:>6} {r['rps'] / 1e6:>10.5f} {r['bps'] / 1e9:>8.4f} "
            f"{r['p50'] * 1e3:>9.3f} {r['p99'] * 1e3:>9.3f} {r['uniq'] * 100:>6.1f} {r['touched'] * 100:>9.2f} "
            f"{pct(resid0):>8} {pct(resid):>7} {access:>10}  {method}")


def cold_figure(path, dim, rows, batch, zipf, access, args, to_device, draws):
    """One cold figure: unmap, drop, map again, measure. Returns the line's
    fields."""
    gc.collect()                     # no mapping of the file may stay (mapped pages are not dropped)
    method = drop_file_cache(path)
    mm = np.load(path, mmap_mode="r")
    if access == "random":
        mm._mmap.madvise(mmap.MADV_RANDOM)  # noqa: SLF001 (np.memmap's mmap object)
    resid0 = resident_fraction(path)
    rng = np.random.default_rng(batch + dim + 7)
    if zipf:
        draw = draws.setdefault(rows, zipf_sampler(rows))
    else:
        def draw(g, n):
            return g.integers(0, rows, n)
    r = measure_cold(mm, batch, args.seconds, args.cold_min_batches, rng, draw, to_device)
    del mm
    resid = resident_fraction(path)
    return r, resid0, resid, method


def run_cold(tables, args, to_device, tag):
    for dim, rows, path in tables:
        dev, fstype, mnt = mount_of(path)
        print(f"cold: d={dim} {path} on {dev} ({fstype}, {mnt}), {rows} rows, {rows * dim * 2 / 1e9:.2f} GB of rows, "
              f"row {dim * 2} B at data offset {data_offset(path)} B, read_ahead_kb {read_ahead_kb(dev)}; "
              f"zipf1.1 = gpu-pipeline's (p ~ (r+1)^-1.1 over the rows)")
        if fstype in ("tmpfs", "ramfs"):
            print(f"cold: warning: {path} is on {fstype}: the page cache cannot be dropped; put --dir on a disk")
    print(cold_header(tag))
    draws = {}
    accesses = ["readaround", "random"] if args.cold_access == "both" else [args.cold_access]
    for access in accesses:
        for dim, rows, path in tables:
            for batch in BATCHES:
                for zipf in [False, True]:
                    r, resid0, resid, method = cold_figure(path, dim, rows, batch, zipf, access, args, to_device, draws)
                    keys = "zipf1.1" if zipf else "uniform"
                    print(cold_line(tag, dim, batch, keys, r, resid0, resid, access, method), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n")[:2]))
    ap.add_argument("--dir", default="/tmp/gpu-baseline")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--cold", action="store_true", help="after the warm figures, the cold page cache figures")
    ap.add_argument("--only-cold", action="store_true", help="only the cold page cache figures")
    ap.add_argument("--cold-min-batches", type=int, default=3, help="at least this many batches per cold figure")
    ap.add_argument("--cold-access", choices=["readaround", "random", "both"], default="both",
                    help="cold: the mapping as mapped (kernel read-around), madvise(MADV_RANDOM)'ed, or both in turn")
    ap.add_argument("--rows", type=int, default=500_000, help="rows of the d = 1024 table; d = 2048 gets half")
    ap.add_argument("--host-only", action="store_true", help="no torch / GPU: numpy gather only (a local check)")
    args = ap.parse_args(argv)
    cold = args.cold or args.only_cold
    os.makedirs(args.dir, exist_ok=True)
    to_device = device_copy(args.host_only)
    if args.host_only:
        print(f"host-only: numpy {np.__version__}, no torch, no .cuda() (not GPU figures)")
    else:
        import torch
        print(f"torch {torch.__version__}, numpy {np.__version__}, device {torch.cuda.get_device_name(0)}")
        torch.zeros(1).cuda()
    tables = []
    for dim, rows in [(1024, args.rows), (2048, args.rows // 2)]:
        path = os.path.join(args.dir, f"rows-{dim}.npy")
        make_rows(path, rows, dim, seed=dim)
        tables.append((dim, rows, path))
    if not args.only_cold:
        pre = "host " if args.host_only else ""
        print(f"{pre}{'dim':>5} {'batch':>6} {'keys':>8} {'Mrows/s':>9} {'GB/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
        for dim, rows, path in tables:
            mm = np.load(path, mmap_mode="r")
            float(np.asarray(mm[:: max(1, rows // 4096)]).sum())  # warm the page cache
            np.asarray(mm).sum(dtype=np.float32)
            for batch in BATCHES:
                for zipf in [False, True]:
                    rng = np.random.default_rng(batch + dim)
                    rps, bps, p50, p99 = measure(mm, batch, args.seconds, rng, zipf, to_device)
                    keys = "zipf1.1" if zipf else "uniform"
                    print(f"{pre}{dim:>5} {batch:>6} {keys:>8} {rps / 1e6:>9.2f} {bps / 1e9:>7.2f} {p50 * 1e3:>8.3f} {p99 * 1e3:>8.3f}",
                          flush=True)
            del mm
    if cold:
        run_cold(tables, args, to_device, "cold-host" if args.host_only else "cold")


if __name__ == "__main__":
    main()
