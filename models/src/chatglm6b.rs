//! ChatGLM-6B (v1): per-head fused qkv, 2D RoPE (positions in one half of each head, block
//! positions in the other, `inv_freq` rounded to fp16), GeLU MLP, LayerNorm, DeepNorm residual
//! `norm(x)·sqrt(2·28) + f(norm(x))`, query scaling by `1/(sqrt(d)(layer+1))` with the scores
//! multiplied back by `layer+1`, and a prefix-LM mask: bidirectional up to `<sop>`, causal after.
use crate::arch::{Block, Loader, Step, StepShared};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::kv_cache::LayerKv;
use crate::layers::{attention, build_mask, rope_angles, rope_halves, Embedding, LoraLinear, Norm};
use candle_core::{Device, Tensor};

/// THUDM's `GLMBlock` takes `num_layers` with a default of 28 that `ChatGLMModel` never
/// overrides, so the DeepNorm residual factor is `sqrt(2·28)` whatever the config says.
const DEEPNORM_LAYERS: f64 = 28.0;

/// The ChatGLM-6B transformer.
pub struct ChatGlm6b {
    cfg: ModelConfig,
    embeddings: Embedding,
    blocks: Vec<Block>,
    final_norm: Norm,
    lm_head: LoraLinear,
    inv_freq: Tensor,
}

/// Where a row's prefix-LM context ends and where its mask token sits.
struct Layout {
    context_len: usize,
    mask_pos: usize,
}

impl ChatGlm6b {
    /// Loads the weights named as in THUDM's checkpoint.
    pub fn load(cfg: &ModelConfig, ld: &Loader) -> Result<Self> {
        let (h, ffn) = (cfg.hidden_size, cfg.ffn_hidden_size);
        let norm = |name: &str| ld.norm(name, h, false, cfg.eps);
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = format!("transformer.layers.{i}");
            blocks.push(Block {
                input_norm: norm(&format!("{p}.input_layernorm"))?,
                qkv: ld.linear(&format!("{p}.attention.query_key_value"), h, 3 * h, true)?,
                dense: ld.linear(&format!("{p}.attention.dense"), h, h, true)?,
                post_norm: norm(&format!("{p}.post_attention_layernorm"))?,
                h_to_4h: ld.linear(&format!("{p}.mlp.dense_h_to_4h"), h, ffn, true)?,
                four_h_to_h: ld.linear(&format!("{p}.mlp.dense_4h_to_h"), ffn, h, true)?,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            embeddings: ld.embedding("transformer.word_embeddings.weight", cfg.vocab_size, h)?,
            blocks,
            final_norm: norm("transformer.final_layernorm")?,
            lm_head: ld.linear("lm_head", h, cfg.vocab_size, false)?,
            inv_freq: inv_freq(cfg.head_dim / 2, ld.device)?,
        })
    }

    fn layout(&self, row: &[u32]) -> Result<Layout> {
        let find = |id: Option<u32>| id.and_then(|id| row.iter().position(|&t| t == id));
        let context_len = find(self.cfg.bos_token_id).ok_or_else(|| {
            ModelError::Input("a ChatGLM-6B prompt must end its context with <sop> (bos_token_id)".into())
        })?;
        let mask_pos = find(self.cfg.gmask_token_id)
            .or_else(|| find(self.cfg.mask_token_id))
            .ok_or_else(|| ModelError::Input("a ChatGLM-6B prompt must hold [gMASK] or [MASK]".into()))?;
        Ok(Layout { context_len, mask_pos })
    }

    /// Runs the new tokens through every layer; returns final hidden states `[b, n, hidden]`.
    pub fn forward(&self, step: &Step, cache: &mut [LayerKv]) -> Result<Tensor> {
        let shared = self.prepare(step)?;
        let mut x = self.embed(step)?;
        for (i, kv) in (0..self.blocks.len()).zip(cache.iter_mut()) {
            x = self.run_block(i, &x, &shared, kv, step.adapter)?;
        }
        self.finish(&x)
    }

    /// The two rotary angle pairs and the prefix-LM mask of a step.
    pub fn prepare(&self, step: &Step) -> Result<StepShared> {
        let (b, n) = step.ids.dims2()?;
        let device = step.ids.device();
        let layouts: Vec<Layout> = step.rows.iter().map(|r| self.layout(r)).collect::<Result<_>>()?;
        let (mut pos, mut block_pos) = (Vec::with_capacity(b * n), Vec::with_capacity(b * n));
        for l in &layouts {
            for p in step.past..step.past + n {
                if p < l.context_len {
                    pos.push(p as u32);
                    block_pos.push(0u32);
                } else {
                    pos.push(l.mask_pos as u32);
                    block_pos.push((p - l.context_len + 1) as u32);
                }
            }
        }
        let (cos1, sin1) = rope_angles(&Tensor::from_vec(pos, (b, n), device)?, &self.inv_freq)?;
        let (cos2, sin2) = rope_angles(&Tensor::from_vec(block_pos, (b, n), device)?, &self.inv_freq)?;
        let (prefix, past) = (step.prefix_len, step.past);
        let t = prefix + past + n;
        let mask = if n > 1 {
            Some(build_mask(b, n, t, device, |row, i, j| {
                j < prefix || j - prefix < layouts[row].context_len || j - prefix <= past + i
            })?)
        } else {
            None
        };
        Ok(StepShared { angles: vec![cos1, sin1, cos2, sin2], mask })
    }

    /// The token embeddings of a step `[b, n, hidden]`.
    pub fn embed(&self, step: &Step) -> Result<Tensor> {
        let (b, n) = step.ids.dims2()?;
        Ok(self.embeddings.forward(step.ids)?.reshape((b, n, ()))?)
    }

    /// Number of transformer blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Block `i` on `x` `[b, n, hidden]`.
    pub fn run_block(&self, i: usize, x: &Tensor, shared: &StepShared, kv: &mut LayerKv, adapter: Option<&str>) -> Result<Tensor> {
        let blk = self.blocks.get(i).ok_or_else(|| ModelError::Input(format!("no block {i}")))?;
        let a = &shared.angles;
        // The product after this block's last: the next block's, or the output layer's.
        let next = self.blocks.get(i + 1).map_or(&self.lm_head, |b| &b.qkv);
        self.block(i, blk, next, x, [&a[0], &a[1], &a[2], &a[3]], shared.mask.as_ref(), kv, adapter)
    }

    /// The final LayerNorm.
    pub fn finish(&self, x: &Tensor) -> Result<Tensor> {
        self.final_norm.forward(x)
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        layer: usize,
        blk: &Block,
        next: &LoraLinear,
        x: &Tensor,
        angles: [&Tensor; 4],
        mask: Option<&Tensor>,
        kv: &mut LayerKv,
        adapter: Option<&str>,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let (b, n, _) = x.dims3()?;
        let (nh, d) = (c.num_heads, c.head_dim);
        let alpha = (2.0 * DEEPNORM_LAYERS).sqrt();
        // A decode step of one sequence: before each product, the next product's weights are
        // posted for the threads that wait (at the product's end, through the ops after it) to
        // pull toward the cache (`warm`).
        let warm = |l: &LoraLinear| if b * n == 1 { l.warm() };
        let normed = blk.input_norm.forward(x)?;
        warm(&blk.dense);
        // The fused projection is laid out per head: [q | k | v] for head 0, then head 1, …
        let qkv = blk.qkv.forward(&normed, adapter)?.reshape((b, n, nh, 3 * d))?;
        let part = |i: usize| -> Result<Tensor> { Ok(qkv.narrow(3, i * d, d)?.transpose(1, 2)?) };
        let q = rotate_2d(&part(0)?, angles)?;
        let k = rotate_2d(&part(1)?, angles)?;
        let v = part(2)?.contiguous()?;
        let (k, v) = kv.append(&k, &v)?;
        let coeff = (layer + 1) as f64;
        let ctx = attention(&q, &k, &v, mask, 1.0 / ((d as f64).sqrt() * coeff), coeff)?;
        let ctx = ctx.transpose(1, 2)?.reshape((b, n, nh * d))?;
        warm(&blk.h_to_4h);
        let x = blk.dense.forward_plus(&ctx, &(&normed * alpha)?, adapter)?;
        let normed = blk.post_norm.forward(&x)?;
        warm(&blk.four_h_to_h);
        let up = blk.h_to_4h.forward(&normed, adapter)?;
        let gated = up.gelu()?;
        warm(next);
        blk.four_h_to_h.forward_plus(&gated, &(normed * alpha)?, adapter)
    }

    /// The output projection.
    pub fn output(&self) -> &LoraLinear {
        &self.lm_head
    }

    /// Every linear layer, for adapters.
    pub fn linears(&self) -> Vec<&LoraLinear> {
        crate::arch::linears(&self.blocks, &self.lm_head)
    }

    /// Every linear layer, mutable.
    pub fn linears_mut(&mut self) -> Vec<&mut LoraLinear> {
        crate::arch::linears_mut(&mut self.blocks, &mut self.lm_head)
    }
}

/// First half of each head rotated by positions, second half by block positions.
fn rotate_2d(x: &Tensor, [cos1, sin1, cos2, sin2]: [&Tensor; 4]) -> Result<Tensor> {
    let half = x.dim(3)? / 2;
    let a = rope_halves(&x.narrow(3, 0, half)?, cos1, sin1)?;
    let b = rope_halves(&x.narrow(3, half, half)?, cos2, sin2)?;
    Ok(Tensor::cat(&[&a, &b], 3)?.contiguous()?)
}

/// `1 / 10000^(2i / dim)` rounded to fp16 as THUDM's code stores it, then used in f32.
fn inv_freq(dim: usize, device: &Device) -> Result<Tensor> {
    let freqs: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| {
            let f = 1.0 / 10000f32.powf(i as f32 / dim as f32);
            half_round(f)
        })
        .collect();
    Ok(Tensor::new(freqs, device)?)
}

/// Rounds an f32 to the nearest fp16 value.
fn half_round(f: f32) -> f32 {
    let t = Tensor::new(&[f], &Device::Cpu)
        .and_then(|t| t.to_dtype(candle_core::DType::F16))
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1::<f32>());
    match t {
        Ok(v) => v.first().copied().unwrap_or(f),
        Err(_) => f,
    }
}
