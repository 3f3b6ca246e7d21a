//! One vector through a full-precision (f32) weight on every core: the decode step of f32 models.
//!
//! candle's product (`gemm`) multiplies a single input row on one thread: `bench_engine` showed
//! the two threads on a CPU 50% of an f32 decode (stop 17), which ran at 46–48% of the bandwidth
//! roofline while F16 ran at 84–88%. Here the weight's rows are split into tasks as the quantized
//! products split theirs (`QMatrix::matvec`), and each task asks `gemm` for its slice of the
//! output on its own thread.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::quant::float_product::rows_times_transposed;

/// `x Wᵀ` for an f32 `weight` `[out, in]` and an `x` holding one row of `in` values (`[1, .., in]`:
/// rank 2 or more, as candle's `Linear` wants, every leading dimension 1), both on the CPU and
/// without gradients. The result has `x`'s leading dimensions and `out` values. `Ok(None)` where
/// this path does not apply (several rows, another dtype or device, a strided weight, a tracked
/// tensor, one thread): the caller keeps candle's product.
pub fn try_matvec(weight: &Tensor, x: &Tensor) -> Result<Option<Tensor>> {
    let (Ok((rows, cols)), Some(&last)) = (weight.dims2(), x.dims().last()) else {
        return Ok(None);
    };
    let applies = weight.dtype() == DType::F32
        && x.dtype() == DType::F32
        && weight.device().is_cpu()
        && x.device().is_cpu()
        && !weight.track_op()
        && !x.track_op()
        && weight.is_contiguous()
        && x.rank() >= 2
        && last == cols
        && x.elem_count() == cols
        && rows > 0
        && cols > 0
        && rayon::current_num_threads() > 1;
    if !applies {
        return Ok(None);
    }
    let input = x.flatten_all()?.to_vec1::<f32>()?;
    let mut y = vec![0f32; rows];
    let chunk = crate::quant::matrix::rows_per_task(rows);
    let read = crate::cpu_storage::with_f32_values(weight, |w| {
        y.par_chunks_mut(chunk).enumerate().for_each(|(c, out)| {
            let slice = &w[c * chunk * cols..(c * chunk + out.len()) * cols];
            let width = out.len();
            rows_times_transposed(&input, 1, slice, cols, out, width, gemm::Parallelism::None);
        })
    });
    if read.is_none() {
        return Ok(None);
    }
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("x has a last dimension") = rows;
    Ok(Some(Tensor::from_vec(y, dims, x.device())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module, Var};

    fn weight(rows: usize, cols: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn one_row_equals_candles_product() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            // Row counts that do and do not divide into the tasks, one and three leading dims.
            for (rows, cols) in [(1, 8), (13, 64), (257, 96), (1024, 33)] {
                let w = weight(rows, cols);
                for shape in [vec![1, cols], vec![1, 1, cols]] {
                    let x = Tensor::randn(0f32, 1.0, shape.clone(), &Device::Cpu).unwrap();
                    let want = candle_nn::Linear::new(w.clone(), None).forward(&x).unwrap();
                    let got = try_matvec(&w, &x).unwrap().expect("one f32 row applies");
                    assert_eq!(got.dims(), want.dims());
                    let (a, b) = (got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                    let err = a.iter().zip(&b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                    assert!(err <= 1e-5 * scale, "{rows}×{cols}: {err} against {scale}");
                }
            }
        });
    }

    #[test]
    fn other_inputs_are_left_to_candle() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            let w = weight(16, 8);
            let two_rows = Tensor::ones((2, 8), DType::F32, &Device::Cpu).unwrap();
            assert!(try_matvec(&w, &two_rows).unwrap().is_none());
            let half = Tensor::ones((1, 8), DType::F16, &Device::Cpu).unwrap();
            assert!(try_matvec(&w.to_dtype(DType::F16).unwrap(), &half).unwrap().is_none());
            let tracked = Var::from_tensor(&Tensor::ones((1, 8), DType::F32, &Device::Cpu).unwrap()).unwrap();
            assert!(try_matvec(&w, tracked.as_tensor()).unwrap().is_none());
            let strided = weight(8, 16).t().unwrap();
            assert!(try_matvec(&strided, &Tensor::ones((1, 8), DType::F32, &Device::Cpu).unwrap()).unwrap().is_none());
            let flat = Tensor::ones(8, DType::F32, &Device::Cpu).unwrap();
            assert!(try_matvec(&w, &flat).unwrap().is_none(), "rank 1, which candle's Linear refuses");
            let wrong_width = Tensor::ones((1, 9), DType::F32, &Device::Cpu).unwrap();
            assert!(try_matvec(&w, &wrong_width).unwrap().is_none());
        });
    }
}
