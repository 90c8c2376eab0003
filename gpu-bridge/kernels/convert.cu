// Element-wise dtype conversion of a dense row block: dst[i] = src[i]
// converted from `skind` to `dkind` for i < n (n = positions * dim values).
// Kinds: 0 = f32, 1 = f16, 2 = bf16 (engine::Dtype's order). Every value
// widens to f32 (exact for f16 and bf16) and narrows with round-to-nearest-
// even (cvt.rn), as the `half` crate does on the CPU, so the device result
// equals engine's CPU conversion bit for bit for finite values. The pipeline
// runs it after the gather/scatter, so the bus carries the stored dtype and
// only device memory sees the wider one. Grid-stride loop, one value per
// thread per trip. The host checks both buffers' sizes before launching.
//
// convert.ptx is the PTX of this kernel, written by hand (see build.sh).

#include <cuda_fp16.h>
#include <cuda_bf16.h>

extern "C" __global__ void convert_rows(const unsigned char* src, unsigned int skind, unsigned char* dst,
                                        unsigned int dkind, unsigned long long n) {
    unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        float v;
        if (skind == 0)
            v = ((const float*)src)[i];
        else if (skind == 1)
            v = __half2float(((const __half*)src)[i]);
        else
            v = __bfloat162float(((const __nv_bfloat16*)src)[i]);
        if (dkind == 0)
            ((float*)dst)[i] = v;
        else if (dkind == 1)
            ((__half*)dst)[i] = __float2half_rn(v);
        else
            ((__nv_bfloat16*)dst)[i] = __float2bfloat16_rn(v);
    }
}
