// Zero-copy row gather: out[p] = rows[slots[p] * stride .. + row_bytes], or a
// zero row where slots[p] == 0xFFFFFFFF (a miss). `rows` is a device pointer
// to host memory (pinned and mapped: cuMemHostRegister / cuMemHostAlloc, UVA),
// so every load crosses the bus; nothing is gathered by the CPU. GPU hot
// cache: `cache` (device memory, same stride) holds rows 0..cached (tables
// are laid out hottest-first); a slot below `cached` reads its row from
// there instead of over the bus (cached = 0: no cache, `cache` may be null).
//
// One warp per position (blocks of 256 threads = 8 positions). Each lane
// copies 16-byte vectors (4 in flight per lane per loop trip) when rows,
// stride, out, cache and row_bytes are all multiples of 16 (scone's stride is a
// multiple of 64, so row_bytes % 16 == 0 is what decides), bytes otherwise.
// The host checks every slot against the table's row count before launching.
//
// gather.ptx is the PTX of this kernel, written by hand (see build.sh):
// the pip wheel nvidia-cuda-nvcc-cu12 ships only ptxas, not nvcc.
// With a CUDA toolkit, `nvcc -ptx -arch=compute_80 -O3 gather.cu -o gather.ptx`
// produces an equivalent module with the same entry point and parameters.

#define MISS 0xFFFFFFFFu

extern "C" __global__ void gather_rows(const unsigned char* rows, unsigned long long stride, unsigned int row_bytes,
                                       const unsigned int* slots, unsigned int n, unsigned char* out,
                                       const unsigned char* cache, unsigned int cached) {
    unsigned long long tid = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long pos = tid >> 5;
    unsigned int lane = threadIdx.x & 31;
    if (pos >= n) return;
    unsigned int slot = slots[pos];
    unsigned char* dst = out + pos * row_bytes;
    const unsigned char* src = (slot < cached ? cache : rows) + (unsigned long long)slot * stride;
    bool miss = slot == MISS;
    bool vec = ((((unsigned long long)rows) | stride | ((unsigned long long)out) | ((unsigned long long)cache) |
                 row_bytes) &
                15) == 0;
    if (vec) {
        if (miss) {
            for (unsigned int i = lane * 16; i < row_bytes; i += 512)
                *(uint4*)(dst + i) = make_uint4(0, 0, 0, 0);
            return;
        }
        for (unsigned int i = lane * 16; i < row_bytes; i += 2048) {
            uint4 a = *(const uint4*)(src + i), b, c, d;
            bool hb = i + 512 < row_bytes, hc = i + 1024 < row_bytes, hd = i + 1536 < row_bytes;
            if (hb) b = *(const uint4*)(src + i + 512);
            if (hc) c = *(const uint4*)(src + i + 1024);
            if (hd) d = *(const uint4*)(src + i + 1536);
            *(uint4*)(dst + i) = a;
            if (hb) *(uint4*)(dst + i + 512) = b;
            if (hc) *(uint4*)(dst + i + 1024) = c;
            if (hd) *(uint4*)(dst + i + 1536) = d;
        }
    } else {
        for (unsigned int i = lane; i < row_bytes; i += 32) dst[i] = miss ? 0 : src[i];
    }
}
