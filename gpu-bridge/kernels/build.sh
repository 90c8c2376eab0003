#!/bin/sh
# Regenerates or checks gather.ptx, the PTX that src/zerocopy.rs embeds.
#
# With nvcc (a CUDA toolkit) on PATH or in $NVCC: compiles gather.cu to PTX.
# Without it: keeps the hand-written gather.ptx (the pip wheel
# nvidia-cuda-nvcc-cu12 ships ptxas but no nvcc) and only assembles it with
# ptxas for sm_80 and sm_90 to check that it is valid.
#   pip install nvidia-cuda-nvcc-cu12   # provides ptxas
set -eu
cd "$(dirname "$0")"
NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -n "$NVCC" ]; then
    "$NVCC" -ptx -arch=compute_80 -O3 gather.cu -o gather.ptx
    echo "gather.ptx regenerated with $NVCC"
fi
PTXAS=${PTXAS:-$(command -v ptxas || python3 -c 'import nvidia.cuda_nvcc, os; print(os.path.join(list(nvidia.cuda_nvcc.__path__)[0], "bin", "ptxas"))' 2>/dev/null || true)}
if [ -z "$PTXAS" ] || [ ! -x "$PTXAS" ]; then
    echo "no ptxas found (pip install nvidia-cuda-nvcc-cu12); gather.ptx not checked" >&2
    exit 1
fi
for arch in sm_80 sm_90; do
    "$PTXAS" -arch=$arch -O3 -v gather.ptx -o /dev/null
done
echo "gather.ptx assembles for sm_80 and sm_90 ($PTXAS)"
