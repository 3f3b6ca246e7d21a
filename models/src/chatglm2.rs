//! ChatGLM2-6B, ChatGLM3-6B and GLM-4: multi-query (grouped) attention with a fused qkv
//! projection, RoPE on the first half of each head in interleaved pairs (base 10000·rope_ratio),
//! RMSNorm, SwiGLU MLP, causal mask.
use crate::arch::{Block, Loader, Step, StepShared};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::kv_cache::LayerKv;
use crate::layers::{attention, build_mask, rope_angles, rope_pairs, Embedding, LoraLinear, Norm};
use candle_core::{DType, Device, Tensor};

/// The ChatGLM2-family transformer.
pub struct ChatGlm2 {
    cfg: ModelConfig,
    embeddings: Embedding,
    blocks: Vec<Block>,
    final_norm: Option<Norm>,
    output: LoraLinear,
    inv_freq: Tensor,
}

impl ChatGlm2 {
    /// Loads the weights named as in THUDM's checkpoints.
    pub fn load(cfg: &ModelConfig, ld: &Loader) -> Result<Self> {
        let (h, kv, ffn) = (cfg.hidden_size, cfg.qkv_size(), cfg.ffn_hidden_size);
        let norm = |name: &str| ld.norm(name, h, cfg.rmsnorm, cfg.eps);
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = format!("transformer.encoder.layers.{i}");
            blocks.push(Block {
                input_norm: norm(&format!("{p}.input_layernorm"))?,
                qkv: ld.linear(&format!("{p}.self_attention.query_key_value"), h, kv, cfg.qkv_bias)?,
                dense: ld.linear(
                    &format!("{p}.self_attention.dense"),
                    cfg.num_heads * cfg.head_dim,
                    h,
                    cfg.linear_bias,
                )?,
                post_norm: norm(&format!("{p}.post_attention_layernorm"))?,
                h_to_4h: ld.linear(&format!("{p}.mlp.dense_h_to_4h"), h, 2 * ffn, cfg.linear_bias)?,
                four_h_to_h: ld.linear(&format!("{p}.mlp.dense_4h_to_h"), ffn, h, cfg.linear_bias)?,
            });
        }
        let final_norm =
            if cfg.post_layer_norm { Some(norm("transformer.encoder.final_layernorm")?) } else { None };
        Ok(Self {
            cfg: cfg.clone(),
            embeddings: ld.embedding("transformer.embedding.word_embeddings.weight", cfg.vocab_size, h)?,
            blocks,
            final_norm,
            output: ld.linear("transformer.output_layer", h, cfg.vocab_size, false)?,
            inv_freq: inv_freq(cfg, ld.device)?,
        })
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

    /// The rotary angles and the mask of a step.
    pub fn prepare(&self, step: &Step) -> Result<StepShared> {
        let (b, n) = step.ids.dims2()?;
        let device = step.ids.device();
        let positions: Vec<u32> = (0..b).flat_map(|_| (step.past..step.past + n).map(|p| p as u32)).collect();
        let positions = Tensor::from_vec(positions, (b, n), device)?;
        let (cos, sin) = rope_angles(&positions, &self.inv_freq)?;
        let t = step.prefix_len + step.past + n;
        let offset = step.prefix_len + step.past;
        let mask = if n > 1 { Some(build_mask(b, n, t, device, |_, i, j| j <= offset + i)?) } else { None };
        Ok(StepShared { angles: vec![cos, sin], mask })
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
        let blk = self.blocks.get(i).ok_or_else(|| crate::error::ModelError::Input(format!("no block {i}")))?;
        let [cos, sin] = [&shared.angles[0], &shared.angles[1]];
        // The product after this block's last: the next block's, or the output layer's.
        let next = self.blocks.get(i + 1).map_or(&self.output, |b| &b.qkv);
        self.block(blk, next, x, cos, sin, shared.mask.as_ref(), kv, adapter)
    }

    /// The final norm (where the family has one).
    pub fn finish(&self, x: &Tensor) -> Result<Tensor> {
        match &self.final_norm {
            Some(norm) => norm.forward(x),
            None => Ok(x.clone()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        blk: &Block,
        next: &LoraLinear,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        kv: &mut LayerKv,
        adapter: Option<&str>,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let (b, n, _) = x.dims3()?;
        let (nh, ng, d) = (c.num_heads, c.num_kv_heads, c.head_dim);
        // A decode step of one sequence: before each product, the next product's weights are
        // posted for the threads that wait (at the product's end, through the ops after it) to
        // pull toward the cache (`warm`).
        let warm = |l: &LoraLinear| if b * n == 1 { l.warm() };
        let normed = blk.input_norm.forward(x)?;
        warm(&blk.dense);
        let qkv = blk.qkv.forward(&normed, adapter)?;
        let (q, k, v) = match crate::heads_rope::try_fused(&qkv, nh, ng, d, cos, sin)? {
            // Keys and values get storage of their own: a fresh cache keeps the prompt's tensors
            // as they are, and a view would keep every query head of the prompt alive with them
            // (18× their size for ChatGLM3-6B). Queries of one batch row are a contiguous view
            // already; with several rows they are copied, as candle's matrix products want.
            Some(all) => (all.narrow(1, 0, nh)?.contiguous()?, all.narrow(1, nh, ng)?.force_contiguous()?, all.narrow(1, nh + ng, ng)?.force_contiguous()?),
            None => {
                let heads = |start: usize, count: usize| -> Result<Tensor> {
                    Ok(qkv.narrow(2, start * d, count * d)?.reshape((b, n, count, d))?.transpose(1, 2)?)
                };
                let q = self.rotate(&heads(0, nh)?, cos, sin)?;
                let k = self.rotate(&heads(nh, ng)?, cos, sin)?;
                (q, k, heads(nh + ng, ng)?.contiguous()?)
            }
        };
        let (k, v) = kv.append(&k, &v)?;
        let ctx = attention(&q, &k, &v, mask, 1.0 / (d as f64).sqrt(), 1.0)?;
        let ctx = ctx.transpose(1, 2)?.reshape((b, n, nh * d))?;
        let residual = if c.residual_post_layernorm { &normed } else { x };
        warm(&blk.h_to_4h);
        let x = blk.dense.forward_plus(&ctx, residual, adapter)?;
        let normed = blk.post_norm.forward(&x)?;
        warm(&blk.four_h_to_h);
        let up = blk.h_to_4h.forward(&normed, adapter)?;
        let gated = crate::swiglu::silu_mul_halves(&up)?;
        let residual = if c.residual_post_layernorm { &normed } else { &x };
        warm(next);
        blk.four_h_to_h.forward_plus(&gated, residual, adapter)
    }

    /// RoPE on the first half of each head, the rest passes through.
    fn rotate(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let d = x.dim(3)?;
        let rot = d / 2;
        let rotated = rope_pairs(&x.narrow(3, 0, rot)?, cos, sin)?;
        Ok(Tensor::cat(&[&rotated, &x.narrow(3, rot, d - rot)?], 3)?.contiguous()?)
    }

    /// The output projection.
    pub fn output(&self) -> &LoraLinear {
        &self.output
    }

    /// Every linear layer, for adapters.
    pub fn linears(&self) -> Vec<&LoraLinear> {
        crate::arch::linears(&self.blocks, &self.output)
    }

    /// Every linear layer, mutable.
    pub fn linears_mut(&mut self) -> Vec<&mut LoraLinear> {
        crate::arch::linears_mut(&mut self.blocks, &mut self.output)
    }
}

/// `1 / base^(2i / r)` for the rotary half `r = head_dim / 2`, in f32.
fn inv_freq(cfg: &ModelConfig, device: &Device) -> Result<Tensor> {
    let rot = cfg.head_dim / 2;
    let freqs: Vec<f32> = (0..rot)
        .step_by(2)
        .map(|i| 1.0 / (cfg.rope_base as f32).powf(i as f32 / rot as f32))
        .collect();
    Ok(Tensor::new(freqs, device)?.to_dtype(DType::F32)?)
}
