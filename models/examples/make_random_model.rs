//! Writes a random-weight ChatGLM3-architecture model folder of realistic shape, for benchmarks.
//!
//! `cargo run --release -p doctorglm-models --example make_random_model -- --out DIR
//!  [--hidden 2048 --layers 24 --vocab 65024 --heads 16 --groups 2 --ffn 5632 --seed 1
//!   --shard-mib 2048 --tokenizer-from ../shared/fixtures/models/chatglm3-tiny]`
//!
//! The folder holds `config.json` (as THUDM's ChatGLM3 configs have it), f16 safetensors shards
//! and `model.safetensors.index.json`. Weights are generated tensor by tensor while each shard is
//! written, so memory holds one tensor at a time. The same seed gives the same files.
//! `--tokenizer-from DIR` copies `tokenizer.model` and `tokenizer_config.json` from DIR.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use half::f16;
use rand::{rngs::StdRng, Rng, SeedableRng};
use safetensors::tensor::{Dtype, View};

#[derive(Parser)]
struct Args {
    /// Output folder (created; existing model files in it are replaced).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 2048)]
    hidden: usize,
    #[arg(long, default_value_t = 24)]
    layers: usize,
    #[arg(long, default_value_t = 65024)]
    vocab: usize,
    /// Attention heads (head size = hidden / heads).
    #[arg(long, default_value_t = 16)]
    heads: usize,
    /// Key/value groups of multi-query attention.
    #[arg(long, default_value_t = 2)]
    groups: usize,
    /// MLP inner size (SwiGLU: dense_h_to_4h has twice as many rows).
    #[arg(long, default_value_t = 5632)]
    ffn: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Largest shard, MiB.
    #[arg(long, default_value_t = 2048)]
    shard_mib: usize,
    /// Folder to copy tokenizer.model and tokenizer_config.json from.
    #[arg(long)]
    tokenizer_from: Option<PathBuf>,
}

/// How a tensor's values are made.
#[derive(Clone, Copy)]
enum Init {
    /// Uniform with this standard deviation, from this tensor's own seed.
    Random { std: f32, seed: u64 },
    /// All ones (norm weights).
    Ones,
    /// RoPE inverse frequencies of a head of `dim` dimensions with half rotated.
    InvFreq { dim: usize },
}

/// A tensor whose bytes are generated only when the writer asks for them.
struct LazyTensor {
    shape: Vec<usize>,
    init: Init,
}

impl LazyTensor {
    fn values(&self) -> Vec<f16> {
        let n: usize = self.shape.iter().product();
        match self.init {
            Init::Ones => vec![f16::ONE; n],
            Init::InvFreq { dim } => (0..n).map(|i| f16::from_f32(1.0 / 10000f32.powf((2 * i) as f32 / (dim / 2) as f32))).collect(),
            Init::Random { std, seed } => {
                let mut rng = StdRng::seed_from_u64(seed);
                let a = std * 3f32.sqrt();
                (0..n).map(|_| f16::from_f32(rng.random_range(-a..a))).collect()
            }
        }
    }
}

impl View for &LazyTensor {
    fn dtype(&self) -> Dtype {
        Dtype::F16
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.values().iter().flat_map(|v| v.to_le_bytes()).collect())
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 2
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.hidden % a.heads != 0 || a.heads % a.groups != 0 {
        bail!("--hidden must be a multiple of --heads and --heads a multiple of --groups");
    }
    let kv = a.hidden / a.heads;
    let qkv_rows = (a.heads + 2 * a.groups) * kv;
    let std = 0.02f32;
    let mut tensors: Vec<(String, LazyTensor)> = Vec::new();
    let mut seed = a.seed.wrapping_mul(1_000_003);
    let mut add = |name: String, shape: Vec<usize>, init: Option<Init>| {
        seed += 1;
        let init = init.unwrap_or(Init::Random { std, seed });
        tensors.push((name, LazyTensor { shape, init }));
    };
    add("transformer.embedding.word_embeddings.weight".into(), vec![a.vocab, a.hidden], None);
    add("transformer.rotary_pos_emb.inv_freq".into(), vec![kv / 4], Some(Init::InvFreq { dim: kv }));
    for l in 0..a.layers {
        let p = format!("transformer.encoder.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), vec![a.hidden], Some(Init::Ones));
        add(format!("{p}.self_attention.query_key_value.weight"), vec![qkv_rows, a.hidden], None);
        add(format!("{p}.self_attention.query_key_value.bias"), vec![qkv_rows], None);
        add(format!("{p}.self_attention.dense.weight"), vec![a.hidden, a.hidden], None);
        add(format!("{p}.post_attention_layernorm.weight"), vec![a.hidden], Some(Init::Ones));
        add(format!("{p}.mlp.dense_h_to_4h.weight"), vec![2 * a.ffn, a.hidden], None);
        add(format!("{p}.mlp.dense_4h_to_h.weight"), vec![a.hidden, a.ffn], None);
    }
    add("transformer.encoder.final_layernorm.weight".into(), vec![a.hidden], Some(Init::Ones));
    add("transformer.output_layer.weight".into(), vec![a.vocab, a.hidden], None);

    // Split into shards of at most --shard-mib (a tensor larger than that gets its own shard).
    let limit = a.shard_mib * 1024 * 1024;
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0usize;
    for (i, (_, t)) in tensors.iter().enumerate() {
        let len = t.data_len();
        if size + len > limit && !shards.last().is_none_or(|s| s.is_empty()) {
            shards.push(Vec::new());
            size = 0;
        }
        size += len;
        shards.last_mut().context("no shard")?.push(i);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut total = 0usize;
    for (s, idx) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", s + 1, n);
        let views: Vec<(&str, &LazyTensor)> = idx.iter().map(|&i| (tensors[i].0.as_str(), &tensors[i].1)).collect();
        for (name, t) in &views {
            weight_map.insert(name.to_string(), file.clone());
            total += (*t).data_len();
        }
        let meta = Some(std::collections::HashMap::from([("format".to_string(), "pt".to_string())]));
        safetensors::serialize_to_file(views, meta, &a.out.join(&file)).with_context(|| format!("writing {file}"))?;
        eprintln!("wrote {file}");
    }
    let index = serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
    std::fs::write(a.out.join("model.safetensors.index.json"), serde_json::to_string_pretty(&index)?)?;
    let config = serde_json::json!({
        "architectures": ["ChatGLMModel"],
        "model_type": "chatglm",
        "add_bias_linear": false,
        "add_qkv_bias": true,
        "apply_query_key_layer_scaling": true,
        "apply_residual_connection_post_layernorm": false,
        "attention_dropout": 0.0,
        "attention_softmax_in_fp32": true,
        "bias_dropout_fusion": true,
        "ffn_hidden_size": a.ffn,
        "fp32_residual_connection": false,
        "hidden_dropout": 0.0,
        "hidden_size": a.hidden,
        "kv_channels": kv,
        "layernorm_epsilon": 1e-05,
        "multi_query_attention": true,
        "multi_query_group_num": a.groups,
        "num_attention_heads": a.heads,
        "num_layers": a.layers,
        "original_rope": true,
        "padded_vocab_size": a.vocab,
        "post_layer_norm": true,
        "rmsnorm": true,
        "seq_length": 8192,
        "use_cache": true,
        "torch_dtype": "float16",
        "tie_word_embeddings": false,
        "eos_token_id": 2,
        "pad_token_id": 0
    });
    std::fs::write(a.out.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    if let Some(from) = &a.tokenizer_from {
        for f in ["tokenizer.model", "tokenizer_config.json"] {
            std::fs::copy(from.join(f), a.out.join(f)).with_context(|| format!("copying {f} from {}", from.display()))?;
        }
    }
    let params = total / 2;
    println!("{}: {} tensors, {:.2} B parameters, {:.2} GiB in {n} shard(s)", a.out.display(), tensors.len(), params as f64 / 1e9, total as f64 / (1u64 << 30) as f64);
    Ok(())
}
