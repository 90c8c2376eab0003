"""The baseline a user would write to bring embedding rows to the GPU: numpy
memmap fancy indexing followed by torch.from_numpy(...).cuda().

Used beside `gpu-pipeline` (gpu-bridge/src/bin/gpu-pipeline.rs) in the same
device run; the tables have the same shapes (f16 rows, d = 1024 with 500 K
rows, d = 2048 with 250 K rows: 1.02 GB each) and live in the page cache.

    python3 bench/python/gpu_baseline.py --dir /tmp/gpu-baseline --seconds 1
"""
import argparse
import os
import time

import numpy as np
import torch


def make_rows(path, rows, dim, seed):
    if os.path.exists(path):
        return
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, dim))
    rng = np.random.default_rng(seed)
    step = 65536
    for start in range(0, rows, step):
        n = min(step, rows - start)
        mm[start:start + n] = rng.standard_normal((n, dim), dtype=np.float32).astype(np.float16)
    mm.flush()
    del mm


def measure(mm, batch, seconds, rng, zipf):
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
        t = torch.from_numpy(x).cuda()   # pageable host-to-device copy
        torch.cuda.synchronize()
        lat.append(time.perf_counter() - t0)
        done += batch
        del t
    total = time.perf_counter() - t_start
    lat.sort()
    row_bytes = mm.shape[1] * mm.dtype.itemsize
    return done / total, done * row_bytes / total, lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/gpu-baseline")
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    print(f"torch {torch.__version__}, numpy {np.__version__}, device {torch.cuda.get_device_name(0)}")
    print(f"{'dim':>5} {'batch':>6} {'keys':>8} {'Mrows/s':>9} {'GB/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for dim, rows in [(1024, 500_000), (2048, 250_000)]:
        path = os.path.join(args.dir, f"rows-{dim}.npy")
        make_rows(path, rows, dim, seed=dim)
        mm = np.load(path, mmap_mode="r")
        float(np.asarray(mm[:: max(1, rows // 4096)]).sum())  # warm the page cache
        np.asarray(mm).sum(dtype=np.float32)
        torch.zeros(1).cuda()
        for batch in [1024, 4096, 16384]:
            for zipf in [False, True]:
                rng = np.random.default_rng(batch + dim)
                rps, bps, p50, p99 = measure(mm, batch, args.seconds, rng, zipf)
                keys = "zipf1.1" if zipf else "uniform"
                print(f"{dim:>5} {batch:>6} {keys:>8} {rps / 1e6:>9.2f} {bps / 1e9:>7.2f} {p50 * 1e3:>8.3f} {p99 * 1e3:>8.3f}")


if __name__ == "__main__":
    main()
