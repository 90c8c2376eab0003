//! Rows in the caller's dtype: the `convert_rows` kernel
//! (`kernels/convert.cu`) converts a dense block of rows from the table's
//! stored dtype to the requested one on the device, after the gather or
//! scatter. The bus carries the stored (usually narrower) dtype; only device
//! memory sees the wider one. Values widen to f32 and narrow with
//! round-to-nearest-even, as `engine::dtype::convert_row` does on the CPU.

use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use engine::Dtype;

use crate::driver::no_panic;
use crate::error::{cuda_err, BridgeError};
use crate::{DeviceBuffer, Gpu};

/// PTX of `kernels/convert.cu` (see `kernels/build.sh`).
const CONVERT_PTX: &str = include_str!("../kernels/convert.ptx");
const BLOCK: u32 = 256;
/// Grid cap: the kernel loops (grid-stride) over larger blocks.
const MAX_BLOCKS: u64 = 4096;

/// The kernel's code for a dtype (its `skind` / `dkind` parameters).
fn kind(dtype: Dtype) -> u32 {
    match dtype {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::BF16 => 2,
    }
}

/// The loaded `convert_rows` kernel, for one pair of dtypes.
#[derive(Debug)]
pub(crate) struct ConvertKernel {
    func: CudaFunction,
    from: Dtype,
    to: Dtype,
}

impl ConvertKernel {
    pub(crate) fn load(gpu: &Gpu, from: Dtype, to: Dtype) -> Result<ConvertKernel, BridgeError> {
        let ctx = gpu.ctx().clone();
        let func = no_panic("loading convert kernel", move || {
            let module = ctx.load_module(Ptx::from_src(CONVERT_PTX)).map_err(cuda_err("loading convert PTX"))?;
            module.load_function("convert_rows").map_err(cuda_err("cuModuleGetFunction(convert_rows)"))
        })?;
        Ok(ConvertKernel { func, from, to })
    }

    /// Enqueues the conversion of the first `values` values of `src` (in
    /// `from`) into the first `values` values of `dst` (in `to`) on `gpu`'s
    /// stream. Both buffers' sizes are checked here.
    pub(crate) fn launch(
        &self,
        gpu: &Gpu,
        src: &DeviceBuffer,
        dst: &mut DeviceBuffer,
        values: usize,
    ) -> Result<(), BridgeError> {
        if values == 0 {
            return Ok(());
        }
        let (need_src, need_dst) = (values * self.from.size(), values * self.to.size());
        if src.len() < need_src || dst.len() < need_dst {
            return Err(BridgeError::InvalidArgument(format!(
                "convert buffers too small: {values} values need {need_src} and {need_dst} bytes, have {} and {}",
                src.len(),
                dst.len()
            )));
        }
        let (Some(s), Some(d)) = (src.slice(), dst.slice_mut()) else {
            return Err(BridgeError::InvalidArgument("empty convert buffers".into()));
        };
        let n = values as u64;
        let blocks = n.div_ceil(u64::from(BLOCK)).min(MAX_BLOCKS) as u32;
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        let (skind, dkind) = (kind(self.from), kind(self.to));
        let mut b = gpu.stream().launch_builder(&self.func);
        b.arg(s).arg(&skind).arg(d).arg(&dkind).arg(&n);
        // SAFETY: the arguments match convert_rows's parameters in number,
        // order and type (src pointer, u32 skind, dst pointer, u32 dkind, u64
        // n). The kernel reads n values of `skind`'s size from `src` and
        // writes n values of `dkind`'s size to `dst`; both buffers hold at
        // least that many bytes (checked above), and the kinds are those of
        // `from` and `to`, the sizes used in the check.
        unsafe { b.launch(cfg) }.map_err(cuda_err("cuLaunchKernel(convert_rows)"))?;
        Ok(())
    }
}
