#!/bin/sh
# Regenerates or checks the PTX that the crate embeds: gather.ptx
# (src/zerocopy.rs, kernel gather_rows) scatter.ptx (src/scatter.rs,
# kernel scatter_rows).
#
# With nvcc (a CUDA toolkit) on PATH or in $NVCC: compiles each .cu to PTX.
# Without it: keeps the hand-written .ptx files (the pip wheel
# nvidia-cuda-nvcc-cu12 ships ptxas but no nvcc) and only assembles them with
# ptxas for sm_80 and sm_90 to check that they are valid.
#   pip install nvidia-cuda-nvcc-cu12   # provides ptxas
set -eu
cd "$(dirname "$0")"
KERNELS="gather scatter convert"
NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -n "$NVCC" ]; then
    for k in $KERNELS; do
        "$NVCC" -ptx -arch=compute_80 -O3 "$k.cu" -o "$k.ptx"
        echo "$k.ptx regenerated with $NVCC"
    done
fi
PTXAS=${PTXAS:-$(command -v ptxas || python3 -c 'import nvidia.cuda_nvcc, os; print(os.path.join(list(nvidia.cuda_nvcc.__path__)[0], "bin", "ptxas"))' 2>/dev/null || true)}
if [ -z "$PTXAS" ] || [ ! -x "$PTXAS" ]; then
    echo "no ptxas found (pip install nvidia-cuda-nvcc-cu12); PTX not checked" >&2
    exit 1
fi
for k in $KERNELS; do
    for arch in sm_80 sm_90; do
        "$PTXAS" -arch=$arch -O3 -v "$k.ptx" -o /dev/null
    done
done
echo "$KERNELS: PTX assembles for sm_80 and sm_90 ($PTXAS)"
