//! Building blocks shared by the architectures: linear layers with LoRA slots, norms, RoPE
//! and attention. Each op takes the fast fused candle kernel at inference and a differentiable
//! composition of basic ops when its input carries a gradient (LoRA training).
use crate::error::Result;
use crate::lora::LoraPair;
use candle_core::{DType, Module, Tensor, D};
use std::collections::HashMap;

/// `y = x Wᵀ + b`, plus `scale · B A x` for the LoRA adapter chosen per call (kept unmerged).
pub struct LoraLinear {
    /// Full module name as PEFT sees it (e.g. `transformer.layers.0.attention.query_key_value`).
    pub name: String,
    /// Weight `[out, in]`.
    pub weight: Tensor,
    /// Optional bias `[out]`.
    pub bias: Option<Tensor>,
    /// Loaded adapters by name.
    pub adapters: HashMap<String, LoraPair>,
    /// Quantized base weight; when set, `weight` is a zero-stride placeholder (see `quant::linear`).
    /// On the CPU our kernels multiply it; on another device it is the host copy of `on_device`.
    pub quant: Option<std::sync::Arc<crate::quant::QMatrix>>,
    /// The quantized base weight in device memory (GPU models), multiplied by candle's kernels.
    pub on_device: Option<std::sync::Arc<crate::quant::device::DeviceMatrix>>,
}

impl LoraLinear {
    /// A linear layer without adapters.
    pub fn new(name: String, weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { name, weight, bias, adapters: HashMap::new(), quant: None, on_device: None }
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.dims().get(1).copied().unwrap_or(0)
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.dims().first().copied().unwrap_or(0)
    }

    /// Posts the quantized weights (CPU models) for the waiting threads of a decode step to pull
    /// toward the cache before this layer's product (called one product ahead; see `warm`).
    pub fn warm(&self) {
        if let (None, Some(q)) = (&self.on_device, &self.quant) {
            q.warm();
        }
    }

    /// Applies the layer; `adapter` picks a loaded LoRA (absent here: the base alone).
    pub fn forward(&self, x: &Tensor, adapter: Option<&str>) -> Result<Tensor> {
        match self.decode_row(x, None, adapter)? {
            Some(y) => Ok(y),
            None => self.forward_general(x, adapter),
        }
    }

    /// `residual + self.forward(x)`, the residual added into the product's output where
    /// the product is a decode row (see [`decode_row`]).
    pub fn forward_plus(&self, x: &Tensor, residual: &Tensor, adapter: Option<&str>) -> Result<Tensor> {
        match self.decode_row(x, Some(residual), adapter)? {
            Some(y) => Ok(y),
            None => Ok((residual + self.forward_general(x, adapter)?)?),
        }
    }

    /// [`decode_row`] where the layer is quantized on the CPU and no adapter applies.
    fn decode_row(&self, x: &Tensor, residual: Option<&Tensor>, adapter: Option<&str>) -> Result<Option<Tensor>> {
        match (adapter.and_then(|name| self.adapters.get(name)), &self.on_device, &self.quant) {
            (None, None, Some(q)) => decode_row(q, self.bias.as_ref(), residual, x),
            _ => Ok(None),
        }
    }

    fn forward_general(&self, x: &Tensor, adapter: Option<&str>) -> Result<Tensor> {
        let lora = adapter.and_then(|name| self.adapters.get(name));
        let training = lora.is_some_and(|l| l.a.track_op() || l.b.track_op());
        // The products that leave the bias to be added here; `None`: candle's `Linear` does both.
        let product = match (&self.on_device, &self.quant) {
            (Some(d), _) => Some(d.forward(x, training || x.track_op())?),
            (None, Some(q)) => Some(crate::quant_grad::quantized_linear(q, x, training)?),
            (None, None) if x.track_op() => Some(crate::quant_grad::frozen_linear(&self.weight, x)?),
            // One row (a decode step) on every core; candle's product runs it on one.
            (None, None) => crate::dense_matvec::try_matvec(&self.weight, x)?,
        };
        let base = match product {
            Some(y) => match &self.bias {
                Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?)?,
                None => y,
            },
            None => candle_nn::Linear::new(self.weight.clone(), self.bias.clone()).forward(x)?,
        };
        match lora {
            None => Ok(base),
            Some(lora) => {
                let a = lora.a.to_dtype(x.dtype())?;
                let b = lora.b.to_dtype(x.dtype())?;
                let low = x.broadcast_matmul(&a.t()?)?;
                let up = low.broadcast_matmul(&b.t()?)?;
                Ok((base + (up * lora.scale)?)?)
            }
        }
    }
}

/// `W·x + b (+ r)` for a single f32 row `x` on the CPU without gradient (a decode step, no
/// adapter): the product reads `x` where it lies, and the bias and the residual `r` (of the
/// output's shape) are added into its output, with none of the general path's copies and
/// tensors (about 4 µs of candle calls per product, and one add per residual). `None` for any
/// other input.
fn decode_row(q: &crate::quant::QMatrix, bias: Option<&Tensor>, residual: Option<&Tensor>, x: &Tensor) -> Result<Option<Tensor>> {
    use crate::cpu_storage::with_f32_values;
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = q.rows();
    }
    let readable = |t: &Tensor| !t.track_op() && with_f32_values(t, |_| ()).is_some();
    let bias_fits = bias.is_none_or(|b| b.dims() == [q.rows()] && readable(b));
    let residual_fits = residual.is_none_or(|r| r.dims() == dims && readable(r));
    if x.track_op() || !bias_fits || !residual_fits || x.dims().last() != Some(&q.cols()) || x.elem_count() != q.cols() {
        return Ok(None);
    }
    let mut y = vec![0f32; q.rows()];
    match with_f32_values(x, |x| q.matvec(x, &mut y)) {
        Some(done) => done?,
        None => return Ok(None),
    }
    for t in [bias, residual].into_iter().flatten() {
        with_f32_values(t, |t| y.iter_mut().zip(t).for_each(|(y, t)| *y += t));
    }
    Ok(Some(Tensor::from_vec(y, dims, x.device())?))
}

/// The token embedding table: a tensor, or (quantized models) rows kept as f16/f32 bytes, owned
/// or memory-mapped from the cache, of which a lookup converts only the rows it needs.
pub enum Embedding {
    /// A `[vocab, hidden]` tensor.
    Dense(Tensor),
    /// Rows as little-endian bytes.
    Rows {
        /// The bytes, row after row.
        data: crate::quant::QBytes,
        /// F16 or F32.
        ty: crate::quant::gguf::GgufType,
        /// Rows (vocabulary size).
        rows: usize,
        /// Values per row (hidden size).
        cols: usize,
        /// The dtype lookups return.
        dtype: DType,
        /// The device lookups put their rows on (the table itself stays in host memory).
        device: candle_core::Device,
    },
}

impl Embedding {
    /// The rows of `ids` (u32, any shape): `[ids.elem_count(), hidden]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = ids.flatten_all()?;
        match self {
            Embedding::Dense(t) => Ok(t.embedding(&ids)?),
            Embedding::Rows { data, ty, rows, cols, dtype, device } => {
                let ids = ids.to_dtype(DType::U32)?.to_vec1::<u32>()?;
                let bytes = data.as_slice();
                let size = if *ty == crate::quant::gguf::GgufType::F16 { 2 } else { 4 };
                let mut out = vec![0f32; ids.len() * cols];
                for (&id, o) in ids.iter().zip(out.chunks_exact_mut(*cols)) {
                    let id = id as usize;
                    if id >= *rows {
                        return Err(crate::error::ModelError::Input(format!("token id {id} is outside the vocabulary of {rows}")));
                    }
                    let row = &bytes[id * cols * size..(id + 1) * cols * size];
                    if size == 2 {
                        for (o, b) in o.iter_mut().zip(row.chunks_exact(2)) {
                            *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                        }
                    } else {
                        for (o, b) in o.iter_mut().zip(row.chunks_exact(4)) {
                            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        }
                    }
                }
                Ok(Tensor::from_vec(out, (ids.len(), *cols), &candle_core::Device::Cpu)?.to_dtype(*dtype)?.to_device(device)?)
            }
        }
    }
}

/// LayerNorm (ChatGLM-6B) or RMSNorm (ChatGLM2/3, GLM-4).
pub enum Norm {
    /// `(x - mean) / sqrt(var + eps) * w + b`.
    Layer {
        /// Scale.
        weight: Tensor,
        /// Shift.
        bias: Tensor,
        /// Epsilon.
        eps: f64,
    },
    /// `x / sqrt(mean(x²) + eps) * w`.
    Rms {
        /// Scale.
        weight: Tensor,
        /// Epsilon.
        eps: f64,
    },
}

impl Norm {
    /// Normalizes over the last dimension (computed in f32 for half-precision inputs).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let grad = x.track_op();
        Ok(match self {
            Norm::Layer { weight, bias, eps } if grad => layer_norm_slow(x, weight, bias, *eps)?,
            Norm::Layer { weight, bias, eps } => match crate::norm_rows::layer_norm(x, weight, bias, *eps)? {
                Some(y) => y,
                None => candle_nn::ops::layer_norm(x, weight, bias, *eps as f32)?,
            },
            Norm::Rms { weight, eps } if grad => candle_nn::ops::rms_norm_slow(x, weight, *eps as f32)?,
            Norm::Rms { weight, eps } => match crate::norm_rows::rms_norm(x, weight, *eps)? {
                Some(y) => y,
                None => candle_nn::ops::rms_norm(x, weight, *eps as f32)?,
            },
        })
    }
}

fn layer_norm_slow(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.to_dtype(dtype)?.broadcast_mul(w)?.broadcast_add(b)
}

/// Softmax over the last dimension.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        Ok(candle_nn::ops::softmax(x, D::Minus1)?)
    } else {
        Ok(candle_nn::ops::softmax_last_dim(x)?)
    }
}

/// Rotary angles `[b, n, len(inv_freq)]` for positions `[b, n]`.
pub fn rope_angles(positions: &Tensor, inv_freq: &Tensor) -> Result<(Tensor, Tensor)> {
    let pos = positions.to_dtype(DType::F32)?.unsqueeze(2)?;
    let freqs = pos.broadcast_mul(&inv_freq.reshape((1, 1, ()))?)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Rotates `x` `[b, h, n, r]` in two halves (GPT-NeoX style) by angles `[b, n, r/2]`.
pub fn rope_halves(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
    if !x.track_op() {
        return Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)?);
    }
    let half = x.dim(D::Minus1)? / 2;
    let cos = Tensor::cat(&[&cos, &cos], D::Minus1)?.unsqueeze(1)?;
    let sin = Tensor::cat(&[&sin, &sin], D::Minus1)?.unsqueeze(1)?;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
}

/// Rotates `x` `[b, h, n, r]` in interleaved pairs `(x0, x1), (x2, x3), …` by angles `[b, n, r/2]`.
pub fn rope_pairs(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
    if !x.track_op() {
        return Ok(candle_nn::rotary_emb::rope_i(&x.contiguous()?, &cos, &sin)?);
    }
    let (b, h, n, r) = x.dims4()?;
    let pairs = x.reshape((b, h, n, r / 2, 2))?;
    let x0 = pairs.narrow(4, 0, 1)?;
    let x1 = pairs.narrow(4, 1, 1)?;
    let cos = cos.unsqueeze(1)?.unsqueeze(4)?;
    let sin = sin.unsqueeze(1)?.unsqueeze(4)?;
    let y0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
    let y1 = (x1.broadcast_mul(&cos)? + x0.broadcast_mul(&sin)?)?;
    Ok(Tensor::cat(&[&y0, &y1], 4)?.reshape((b, h, n, r))?)
}

/// Scaled dot-product attention. `q` `[b, h, n, d]`, `k`/`v` `[b, g, t, d]` with `h` a multiple
/// of `g` (each key/value head serves `h/g` consecutive query heads); `mask` `[b, 1, n, t]`
/// additive (0 or -inf). Scores are `(q · q_scale) kᵀ · score_scale`, softmax in f32.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    q_scale: f64,
    score_scale: f64,
) -> Result<Tensor> {
    // A decode step at inference: one fused CPU op (see `decode_attention`).
    if let Some(out) = crate::decode_attention::try_fused(q, k, v, mask, q_scale, score_scale)? {
        return Ok(out);
    }
    attention_composed(q, k, v, mask, q_scale, score_scale)
}

/// [`attention`] as candle tensor operations (prompts, training, other devices and dtypes).
pub(crate) fn attention_composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    q_scale: f64,
    score_scale: f64,
) -> Result<Tensor> {
    let (b, h, n, d) = q.dims4()?;
    let (_, g, t, _) = k.dims4()?;
    if g == 0 || h % g != 0 {
        return Err(crate::error::ModelError::Input(format!("{h} query heads cannot share {g} key/value heads")));
    }
    let rep = h / g;
    // A cache that stores a narrower dtype (f16 keys and values under f32 queries).
    let (k, v) = (&k.to_dtype(q.dtype())?, &v.to_dtype(q.dtype())?);
    // The query heads that share a key/value head are stacked as rows (`[b, g, rep·n, d]`), so
    // the keys and values are used as they are: views of the cache, never expanded or copied.
    let q = (q * q_scale)?.contiguous()?.reshape((b, g, rep * n, d))?;
    let scores = q.matmul(&k.t()?)?.reshape((b, h, n, t))?;
    let mut scores = (scores.to_dtype(DType::F32)? * score_scale)?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    let probs = softmax_last(&scores)?.to_dtype(v.dtype())?.reshape((b, g, rep * n, t))?;
    Ok(probs.matmul(v)?.reshape((b, h, n, d))?)
}

/// An additive mask `[b, 1, n, t]` from a visibility predicate over (row, query, key).
pub fn build_mask(
    b: usize,
    n: usize,
    t: usize,
    device: &candle_core::Device,
    visible: impl Fn(usize, usize, usize) -> bool,
) -> Result<Tensor> {
    let mut data = Vec::with_capacity(b * n * t);
    for row in 0..b {
        for i in 0..n {
            for j in 0..t {
                data.push(if visible(row, i, j) { 0f32 } else { f32::NEG_INFINITY });
            }
        }
    }
    Ok(Tensor::from_vec(data, (b, 1, n, t), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn sample(shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::randn(0f32, 1f32, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn fused_and_differentiable_rope_agree() {
        let x = sample((2, 3, 5, 8));
        let cos = Tensor::randn(0f32, 1f32, (2, 5, 4), &Device::Cpu).unwrap();
        let sin = Tensor::randn(0f32, 1f32, (2, 5, 4), &Device::Cpu).unwrap();
        let var = Var::from_tensor(&x).unwrap();
        for f in [rope_halves, rope_pairs] {
            let fast = f(&x, &cos, &sin).unwrap();
            let slow = f(var.as_tensor(), &cos, &sin).unwrap();
            assert!(max_diff(&fast, &slow) < 1e-5);
        }
    }

    #[test]
    fn a_quantized_decode_row_adds_bias_and_residual_as_the_general_path_does() {
        let (rows, cols) = (64, 96);
        let weight = Tensor::randn(0f32, 0.1, (rows, cols), &Device::Cpu).unwrap();
        let bias = Tensor::randn(0f32, 1.0, rows, &Device::Cpu).unwrap();
        let mut layer = LoraLinear::new("l".into(), weight, Some(bias));
        assert!(crate::quant::linear::quantize_layer(&mut layer, crate::quant::QuantFormat::Q8_0).unwrap());
        let residual = Tensor::randn(0f32, 1.0, (1, 1, rows), &Device::Cpu).unwrap();
        for n in [1, 3] {
            // One row takes `decode_row`; three rows (a prompt) the general path.
            let x = Tensor::randn(0f32, 1.0, (1, n, cols), &Device::Cpu).unwrap();
            let general = layer.forward_general(&x, None).unwrap();
            assert!(max_diff(&layer.forward(&x, None).unwrap(), &general) < 1e-5, "{n} rows");
            let residual = residual.broadcast_as((1, n, rows)).unwrap().contiguous().unwrap();
            let plus = layer.forward_plus(&x, &residual, None).unwrap();
            assert_eq!(plus.dims(), &[1, n, rows]);
            assert!(max_diff(&plus, &(general + &residual).unwrap()) < 1e-5, "{n} rows with a residual");
        }
        // A residual of another shape goes to candle's addition, which refuses it.
        let x = Tensor::randn(0f32, 1.0, (1, 1, cols), &Device::Cpu).unwrap();
        let wrong = Tensor::randn(0f32, 1.0, (1, 2, rows), &Device::Cpu).unwrap();
        assert!(layer.forward_plus(&x, &wrong, None).is_err());
    }

    #[test]
    fn fused_and_differentiable_norms_agree() {
        let x = sample((1, 2, 3, 16));
        let w = Tensor::randn(0f32, 1f32, 16, &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1f32, 16, &Device::Cpu).unwrap();
        let var = Var::from_tensor(&x).unwrap();
        for norm in [Norm::Layer { weight: w.clone(), bias: b, eps: 1e-5 }, Norm::Rms { weight: w, eps: 1e-5 }] {
            let fast = norm.forward(&x).unwrap();
            let slow = norm.forward(var.as_tensor()).unwrap();
            assert!(max_diff(&fast, &slow) < 1e-4);
        }
    }

    #[test]
    fn grouped_attention_matches_repeated_heads() {
        let q = sample((1, 4, 3, 8));
        let k = sample((1, 2, 3, 8));
        let v = sample((1, 2, 3, 8));
        let grouped = attention(&q, &k, &v, None, 0.5, 1.0).unwrap();
        let rep = |x: &Tensor| {
            let parts: Vec<Tensor> = (0..4).map(|h| x.narrow(1, h / 2, 1).unwrap()).collect();
            Tensor::cat(&parts, 1).unwrap()
        };
        let full = attention(&q, &rep(&k), &rep(&v), None, 0.5, 1.0).unwrap();
        assert!(max_diff(&grouped, &full) < 1e-6);
    }
}
