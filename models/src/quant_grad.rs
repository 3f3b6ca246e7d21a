//! Frozen linear layers that gradients flow through to their input only (LoRA training over a
//! Q8_0/Q4_0 base, or a full-precision one).
//!
//! candle's own quantized matmul has no backward pass, so a layer whose weight is a [`QMatrix`]
//! would cut the graph and every LoRA layer below it would get no gradient. [`QuantLinearOp`]
//! is a candle `CustomOp1` whose forward is `y = x Wᵀ` and whose backward is the gradient with
//! respect to the input only, `∂x = ∂y W`: the weight is frozen and gets none.
//!
//! Both directions dequantize `W` one slice of rows at a time (at most
//! [`float_product::SLICE_BYTES`] of f32) and multiply it in f32 (`quant::float_product`), so no
//! full-precision copy of the model is ever held and the forward and the backward use exactly
//! the same dequantized weights (the integer-dot decoding kernels quantize the activations too,
//! which would make the forward a slightly different function from the one the backward
//! differentiates).
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use crate::error::Result;
use crate::quant::{float_product, QMatrix};

/// `y = x Wᵀ` over a quantized `W`, with a backward pass to `x` (the weight is frozen).
pub struct QuantLinearOp {
    q: Arc<QMatrix>,
}

impl QuantLinearOp {
    /// The op for one quantized weight.
    pub fn new(q: Arc<QMatrix>) -> Self {
        Self { q }
    }

    /// `g W` for `g` `[n, rows]` (f32, CPU, no graph): `[n, cols]`, summed over slices of rows.
    fn input_gradient(&self, g: &Tensor) -> candle_core::Result<Tensor> {
        let (n, _) = g.dims2()?;
        let gs = g.flatten_all()?.to_vec1::<f32>()?;
        Tensor::from_vec(float_product::times(&self.q, &gs, n), (n, self.q.cols()), &Device::Cpu)
    }
}

impl CustomOp1 for QuantLinearOp {
    fn name(&self) -> &'static str {
        "quantized-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let values = crate::cpu_storage::contiguous_f32("quantized-linear", "the input", storage, layout)?;
        let dims = layout.shape().dims();
        let cols = dims.last().copied().unwrap_or(0);
        if cols != self.q.cols() {
            candle_core::bail!("quantized-linear: input has {cols} features, the weight {}", self.q.cols());
        }
        let n = values.len() / cols.max(1);
        let y = float_product::times_transposed(&self.q, values, n);
        let mut out = dims.to_vec();
        if let Some(last) = out.last_mut() {
            *last = self.q.rows();
        }
        Ok((CpuStorage::F32(y), Shape::from(out)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let rows = self.q.rows();
        let n = grad_res.elem_count() / rows.max(1);
        let g = grad_res.detach().to_dtype(DType::F32)?.reshape((n, rows))?;
        let gx = self.input_gradient(&g)?;
        Ok(Some(gx.reshape(arg.shape())?))
    }
}

/// `y = x Wᵀ` over a frozen full-precision `W` `[out, in]`, with a backward pass to `x` only.
///
/// candle's own matmul backward also computes a gradient for `W` and keeps it in the gradient
/// store until the backward ends: a full copy of every frozen weight and a third of the
/// backward's work, for gradients nobody reads. This op gives `∂x = ∂y W` alone.
pub struct FrozenLinearOp {
    w: Tensor,
}

impl FrozenLinearOp {
    /// The op for one frozen weight `[out, in]` (CPU, the input's dtype).
    pub fn new(w: Tensor) -> Self {
        Self { w }
    }
}

impl CustomOp1 for FrozenLinearOp {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen-linear takes a contiguous input");
        };
        let dims = layout.shape().dims();
        let (out, cols) = self.w.dims2()?;
        if dims.last().copied() != Some(cols) {
            candle_core::bail!("frozen-linear: input has shape {dims:?}, the weight takes {cols} features");
        }
        let n = (end - start) / cols.max(1);
        let cpu = Device::Cpu;
        let x = match storage {
            CpuStorage::F32(v) => Tensor::from_slice(&v[start..end], (n, cols), &cpu)?,
            CpuStorage::BF16(v) => Tensor::from_slice(&v[start..end], (n, cols), &cpu)?,
            CpuStorage::F16(v) => Tensor::from_slice(&v[start..end], (n, cols), &cpu)?,
            other => candle_core::bail!("frozen-linear takes float inputs, got {:?}", other.dtype()),
        };
        let y = x.matmul(&self.w.t()?)?.flatten_all()?;
        let data = match y.dtype() {
            DType::F32 => CpuStorage::F32(y.to_vec1()?),
            DType::BF16 => CpuStorage::BF16(y.to_vec1()?),
            DType::F16 => CpuStorage::F16(y.to_vec1()?),
            other => candle_core::bail!("frozen-linear: unexpected dtype {other:?}"),
        };
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = out;
        }
        Ok((data, Shape::from(shape)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (out, _) = self.w.dims2()?;
        let n = grad_res.elem_count() / out.max(1);
        let g = grad_res.detach().reshape((n, out))?;
        Ok(Some(g.matmul(&self.w)?.reshape(arg.shape())?))
    }
}

/// `x Wᵀ` for a frozen full-precision `w` `[out, in]`: through [`FrozenLinearOp`] when `x`
/// carries a gradient on the CPU (no gradient kept for `w`), else candle's linear layer.
pub fn frozen_linear(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    if x.track_op() && x.device().is_cpu() && w.dtype() == x.dtype() && w.is_contiguous() {
        return Ok(x.contiguous()?.apply_op1(FrozenLinearOp::new(w.clone()))?);
    }
    use candle_core::Module;
    Ok(candle_nn::Linear::new(w.clone(), None).forward(x)?)
}

/// `x Wᵀ` for `x` `[..., cols]` over the quantized `q`: with candle's gradient graph when `x`
/// carries one (training; computed in f32 on the CPU and returned in `x`'s dtype and device),
/// else the inference kernels of [`QMatrix::forward`]. `training` (a trainable adapter rides on
/// this layer) keeps prompts on the dequantized f32 product even where `x` carries no graph, so
/// that the loss is the function of the dequantized weights whose gradients the backward gives.
pub fn quantized_linear(q: &Arc<QMatrix>, x: &Tensor, training: bool) -> Result<Tensor> {
    if !x.track_op() {
        return Ok(if training { q.forward_float_prompts(x)? } else { q.forward(x)? });
    }
    let xs = x.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.contiguous()?;
    let y = xs.apply_op1(QuantLinearOp::new(q.clone()))?;
    Ok(y.to_dtype(x.dtype())?.to_device(x.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QuantFormat;
    use candle_core::Var;

    fn random(seed: u64, n: usize) -> Vec<f32> {
        // A small LCG: the values only need to be spread out and reproducible.
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn forward_and_input_gradient_use_the_dequantized_weight() {
        let (rows, cols) = (96, 64);
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
            let q = Arc::new(QMatrix::quantize(&random(1, rows * cols), rows, cols, format).unwrap());
            let w = q.dequantize_tensor(&Device::Cpu).unwrap();
            let x = Tensor::from_vec(random(2, 2 * 3 * cols), (2, 3, cols), &Device::Cpu).unwrap();
            let g = Tensor::from_vec(random(3, 2 * 3 * rows), (2, 3, rows), &Device::Cpu).unwrap();
            // Through the op.
            let xv = Var::from_tensor(&x).unwrap();
            let y = quantized_linear(&q, xv.as_tensor(), true).unwrap();
            let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = grads.get(xv.as_tensor()).expect("a gradient for the input");
            // The same with the dequantized weight as a plain tensor.
            let xd = Var::from_tensor(&x).unwrap();
            let yd = xd.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
            let grads_d = (&yd * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gxd = grads_d.get(xd.as_tensor()).unwrap();
            assert!(max_diff(&y, &yd) < 1e-4, "{format} forward");
            assert!(max_diff(gx, gxd) < 1e-4, "{format} backward");
            assert!(gx.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.1);
        }
    }

    #[test]
    fn several_slices_give_the_same_result_as_one() {
        // 600 rows of 8192 inputs are 18.75 MiB of f32: two slices.
        let (rows, cols) = (600, 8192);
        let q = Arc::new(QMatrix::quantize(&random(4, rows * cols), rows, cols, QuantFormat::Q4_0).unwrap());
        let op = QuantLinearOp::new(q.clone());
        assert!(rows * cols * 4 > float_product::SLICE_BYTES);
        let w = q.dequantize_tensor(&Device::Cpu).unwrap();
        let x = Tensor::from_vec(random(5, 2 * cols), (2, cols), &Device::Cpu).unwrap();
        let g = Tensor::from_vec(random(6, 2 * rows), (2, rows), &Device::Cpu).unwrap();
        assert!(max_diff(&x.apply_op1(QuantLinearOp::new(q.clone())).unwrap(), &x.matmul(&w.t().unwrap()).unwrap()) < 1e-3);
        assert!(max_diff(&op.input_gradient(&g).unwrap(), &g.matmul(&w).unwrap()) < 1e-3);
    }

    #[test]
    fn frozen_linear_gives_the_input_gradient_and_none_for_the_weight() {
        for dtype in [DType::F32, DType::BF16] {
            let w = Tensor::from_vec(random(11, 24 * 32), (24, 32), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let x = Tensor::from_vec(random(12, 2 * 5 * 32), (2, 5, 32), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let g = Tensor::from_vec(random(13, 2 * 5 * 24), (2, 5, 24), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let xv = Var::from_tensor(&x).unwrap();
            let y = frozen_linear(&w, xv.as_tensor()).unwrap();
            let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let xd = Var::from_tensor(&x).unwrap();
            let yd = xd.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
            let grads_d = (&yd * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
            let tol = if dtype == DType::F32 { 1e-4 } else { 0.1 };
            assert!(max_diff(&f(&y), &f(&yd)) < tol, "{dtype:?} forward");
            assert!(max_diff(&f(grads.get(xv.as_tensor()).unwrap()), &f(grads_d.get(xd.as_tensor()).unwrap())) < tol, "{dtype:?} backward");
            // candle keeps a gradient for each operand, the frozen ones included (here `g`, and for
            // the matmul the transposed weight: a weight-sized tensor); the op adds none for `w`.
            let kept = |g: &candle_core::backprop::GradStore| g.get_ids().count();
            assert_eq!(kept(&grads) + 1, kept(&grads_d), "{dtype:?}: the op kept a gradient for the weight");
        }
    }

    #[test]
    fn training_prompts_without_a_graph_take_the_dequantized_product() {
        // A prompt-sized input over Q4_0 (whose inference prompts may run the tiled 8-bit kernel):
        // with a trainable adapter on the layer the product is the dequantized weights' exactly.
        let (rows, cols, n) = (48, 256, 20);
        let q = Arc::new(QMatrix::quantize(&random(9, rows * cols), rows, cols, QuantFormat::Q4_0).unwrap());
        let x = Tensor::from_vec(random(10, n * cols), (n, cols), &Device::Cpu).unwrap();
        let exact = q.dequantized_product(&x, n).unwrap();
        assert!(max_diff(&quantized_linear(&q, &x, true).unwrap(), &exact) < 1e-6);
        assert!(max_diff(&quantized_linear(&q, &x, false).unwrap(), &q.forward(&x).unwrap()) < 1e-6);
    }

    #[test]
    fn without_a_graph_it_is_the_inference_product() {
        let q = Arc::new(QMatrix::quantize(&random(7, 32 * 64), 32, 64, QuantFormat::Q8_0).unwrap());
        let x = Tensor::from_vec(random(8, 64), (1, 64), &Device::Cpu).unwrap();
        let got = quantized_linear(&q, &x, false).unwrap();
        assert!(!got.track_op());
        assert!(max_diff(&got, &q.forward(&x).unwrap()) < 1e-6);
    }
}
