// Scatter of deduplicated rows: out[p] = the row that idx[p] names, and
// mask[p] = 1, or a zero row and mask[p] = 0 where idx[p] == 0xFFFFFFFF (a
// miss). idx[p] < cached names row idx[p] of the GPU hot cache (`cache`,
// device memory, rows 0..cached of the table at `cstride` bytes apart);
// idx[p] >= cached names row idx[p] - cached of `uniq` (`ustride` bytes
// apart): the batch's distinct, non-cached rows, which crossed the bus once
// (copied there by the CPU-gather path, or gathered there by gather_rows in
// the zero-copy path). Both sources are device memory, so every duplicate
// position costs device bandwidth only. cached = 0: no cache (`cache` may be
// null); no staged rows: `uniq` may be null (no index points into it).
//
// One warp per position (blocks of 256 threads = 8 positions); lane 0 writes
// the mask byte. Each lane copies 16-byte vectors (4 in flight per lane per
// loop trip) when uniq, ustride, cache, cstride, out and row_bytes are all
// multiples of 16, bytes otherwise (same scheme as gather_rows). The host
// builds idx itself (every value is a miss, < cached, or cached + u with u
// below the staged row count) and checks it before launching.
//
// scatter.ptx is the PTX of this kernel, written by hand (see build.sh): the
// pip wheel nvidia-cuda-nvcc-cu12 ships only ptxas, not nvcc. With a CUDA
// toolkit, `nvcc -ptx -arch=compute_80 -O3 scatter.cu -o scatter.ptx`
// produces an equivalent module with the same entry point and parameters.

#define MISS 0xFFFFFFFFu

extern "C" __global__ void scatter_rows(const unsigned char* uniq, unsigned long long ustride,
                                        const unsigned char* cache, unsigned long long cstride, unsigned int cached,
                                        unsigned int row_bytes, const unsigned int* idx, unsigned int n,
                                        unsigned char* out, unsigned char* mask) {
    unsigned long long tid = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long pos = tid >> 5;
    unsigned int lane = threadIdx.x & 31;
    if (pos >= n) return;
    unsigned int k = __ldg(idx + pos);
    bool miss = k == MISS;
    if (lane == 0) mask[pos] = miss ? 0 : 1;
    unsigned char* dst = out + pos * row_bytes;
    const unsigned char* src =
        k < cached ? cache + (unsigned long long)k * cstride : uniq + (unsigned long long)(k - cached) * ustride;
    bool vec = ((((unsigned long long)uniq) | ustride | ((unsigned long long)cache) | cstride |
                 ((unsigned long long)out) | row_bytes) &
                15) == 0;
    if (vec) {
        if (miss) {
            for (unsigned int i = lane * 16; i < row_bytes; i += 512)
                *(uint4*)(dst + i) = make_uint4(0, 0, 0, 0);
            return;
        }
        for (unsigned int i = lane * 16; i < row_bytes; i += 2048) {
            uint4 a = __ldg((const uint4*)(src + i)), b, c, d;
            bool hb = i + 512 < row_bytes, hc = i + 1024 < row_bytes, hd = i + 1536 < row_bytes;
            if (hb) b = __ldg((const uint4*)(src + i + 512));
            if (hc) c = __ldg((const uint4*)(src + i + 1024));
            if (hd) d = __ldg((const uint4*)(src + i + 1536));
            *(uint4*)(dst + i) = a;
            if (hb) *(uint4*)(dst + i + 512) = b;
            if (hc) *(uint4*)(dst + i + 1024) = c;
            if (hd) *(uint4*)(dst + i + 1536) = d;
        }
    } else {
        for (unsigned int i = lane; i < row_bytes; i += 32) dst[i] = miss ? 0 : __ldg(src + i);
    }
}
