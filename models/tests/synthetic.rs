//! Models of other sizes than the fixtures (3 layers, hidden 48, one key/value group), built
//! with random weights in a temporary folder: they load from their config alone, incremental
//! decoding over the KV cache equals a full forward pass, and the batch forward equals the
//! single-sequence one and carries gradients to `Var`-backed LoRA matrices.
use candle_core::{DType, Device, Tensor, Var};
use doctorglm_models::lora::peft_name;
use doctorglm_models::{LoraConfig, Model, PrefixAdapter};
use std::collections::HashMap;
use std::path::Path;

fn rand(shape: &[usize]) -> Tensor {
    (Tensor::randn(0f32, 1f32, shape, &Device::Cpu).unwrap() * 0.2).unwrap()
}

/// Writes config.json and model.safetensors with random weights for `names_shapes`.
fn write_model(dir: &Path, config: &str, tensors: Vec<(String, Vec<usize>)>) {
    std::fs::write(dir.join("config.json"), config).unwrap();
    let map: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(n, s)| {
            let t = if n.contains("layernorm") && n.ends_with("weight") { (rand(&s) + 1.0).unwrap() } else { rand(&s) };
            (n, t.to_dtype(DType::F16).unwrap())
        })
        .collect();
    candle_core::safetensors::save(&map, dir.join("model.safetensors")).unwrap();
}

const VOCAB: usize = 140;

fn chatglm2_small(dir: &Path) {
    let (h, l, heads, d, groups, ffn) = (48, 3, 4, 12, 1, 64);
    let config = format!(
        r#"{{"hidden_size":{h},"num_layers":{l},"num_attention_heads":{heads},"kv_channels":{d},
        "multi_query_attention":true,"multi_query_group_num":{groups},"padded_vocab_size":{VOCAB},
        "ffn_hidden_size":{ffn},"add_qkv_bias":true,"add_bias_linear":false,"rmsnorm":true,
        "post_layer_norm":true,"layernorm_epsilon":1e-5,"rope_ratio":2,"eos_token_id":[2],"seq_length":256}}"#
    );
    let qkv = (heads + 2 * groups) * d;
    let mut t = vec![
        ("transformer.embedding.word_embeddings.weight".into(), vec![VOCAB, h]),
        ("transformer.encoder.final_layernorm.weight".into(), vec![h]),
        ("transformer.output_layer.weight".into(), vec![VOCAB, h]),
    ];
    for i in 0..l {
        let p = format!("transformer.encoder.layers.{i}");
        t.push((format!("{p}.input_layernorm.weight"), vec![h]));
        t.push((format!("{p}.self_attention.query_key_value.weight"), vec![qkv, h]));
        t.push((format!("{p}.self_attention.query_key_value.bias"), vec![qkv]));
        t.push((format!("{p}.self_attention.dense.weight"), vec![h, heads * d]));
        t.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        t.push((format!("{p}.mlp.dense_h_to_4h.weight"), vec![2 * ffn, h]));
        t.push((format!("{p}.mlp.dense_4h_to_h.weight"), vec![h, ffn]));
    }
    write_model(dir, &config, t);
}

fn chatglm6b_small(dir: &Path) {
    let (h, l, heads, ffn) = (48, 3, 4, 96);
    let config = format!(
        r#"{{"hidden_size":{h},"num_layers":{l},"num_attention_heads":{heads},"inner_hidden_size":{ffn},
        "vocab_size":{VOCAB},"position_encoding_2d":true,"bos_token_id":130,"eos_token_id":131,
        "mask_token_id":128,"gmask_token_id":129,"layernorm_epsilon":1e-5,"max_sequence_length":256}}"#
    );
    let mut t = vec![
        ("transformer.word_embeddings.weight".into(), vec![VOCAB, h]),
        ("transformer.final_layernorm.weight".into(), vec![h]),
        ("transformer.final_layernorm.bias".into(), vec![h]),
        ("lm_head.weight".into(), vec![VOCAB, h]),
    ];
    for i in 0..l {
        let p = format!("transformer.layers.{i}");
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            t.push((format!("{p}.{norm}.weight"), vec![h]));
            t.push((format!("{p}.{norm}.bias"), vec![h]));
        }
        for (name, out, inp) in [
            ("attention.query_key_value", 3 * h, h),
            ("attention.dense", h, h),
            ("mlp.dense_h_to_4h", ffn, h),
            ("mlp.dense_4h_to_h", h, ffn),
        ] {
            t.push((format!("{p}.{name}.weight"), vec![out, inp]));
            t.push((format!("{p}.{name}.bias"), vec![out]));
        }
    }
    write_model(dir, &config, t);
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// Logits of `prompt + rest` in one pass equal prompt-then-one-token-at-a-time.
fn check_incremental(model: &Model, prompt: &[u32], rest: &[u32], prefix: Option<&PrefixAdapter>) {
    let mut all: Vec<u32> = prompt.to_vec();
    all.extend_from_slice(rest);
    let full = model.forward(&mut model.new_cache(prefix), &all, None, true).unwrap();
    let mut cache = model.new_cache(prefix);
    let mut steps = vec![model.forward(&mut cache, prompt, None, false).unwrap()];
    for &t in rest {
        steps.push(model.forward(&mut cache, &[t], None, false).unwrap());
    }
    let stepped = Tensor::cat(&steps, 0).unwrap();
    let wanted = full.narrow(0, prompt.len() - 1, rest.len() + 1).unwrap();
    assert!(max_diff(&stepped, &wanted) < 1e-4, "cache and full pass differ");
}

#[test]
fn a_small_chatglm2_runs_from_its_config_and_its_cache_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    chatglm2_small(tmp.path());
    let model = Model::load(tmp.path(), &Default::default()).unwrap();
    assert_eq!((model.config().num_layers, model.config().num_kv_heads), (3, 1));
    check_incremental(&model, &[5, 6, 7, 8, 9], &[10, 11, 12], None);
    // A P-tuning prefix computed through the projection MLP (prefix_projection true).
    let (pre, kv) = (3, 2 * 3 * 12);
    let past = rand(&[pre, kv]);
    let prefix = PrefixAdapter::from_past(&past, 3, 1, 12).unwrap();
    check_incremental(&model, &[5, 6, 7, 8, 9], &[10, 11], Some(&prefix));
}

#[test]
fn a_small_chatglm6b_runs_from_its_config_and_its_cache_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    chatglm6b_small(tmp.path());
    let model = Model::load(tmp.path(), &Default::default()).unwrap();
    assert_eq!(model.config().head_dim, 12);
    check_incremental(&model, &[5, 6, 7, 129, 130], &[10, 11, 12], None);
    let err = model.forward(&mut model.new_cache(None), &[5, 6, 7], None, false).unwrap_err();
    assert!(err.to_string().contains("<sop>"), "{err}");
}

#[test]
fn prefix_projection_checkpoints_load() {
    let tmp = tempfile::tempdir().unwrap();
    chatglm2_small(tmp.path());
    let model = Model::load(tmp.path(), &Default::default()).unwrap();
    let dir = tmp.path().join("ptuning");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"pre_seq_len":2,"prefix_projection":true}"#).unwrap();
    let (h, kv, mid) = (48, 2 * 3 * 12, 20);
    let t: HashMap<String, Tensor> = [
        ("transformer.prefix_encoder.embedding.weight", vec![2, h]),
        ("transformer.prefix_encoder.trans.0.weight", vec![mid, h]),
        ("transformer.prefix_encoder.trans.0.bias", vec![mid]),
        ("transformer.prefix_encoder.trans.2.weight", vec![kv, mid]),
        ("transformer.prefix_encoder.trans.2.bias", vec![kv]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), rand(&s)))
    .collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let prefix = PrefixAdapter::load(&dir, &model).unwrap();
    let get = |n: &str| t[&format!("transformer.prefix_encoder.{n}")].clone();
    let hidden = get("embedding.weight").matmul(&get("trans.0.weight").t().unwrap()).unwrap();
    let hidden = hidden.broadcast_add(&get("trans.0.bias")).unwrap().tanh().unwrap();
    let past = hidden.matmul(&get("trans.2.weight").t().unwrap()).unwrap().broadcast_add(&get("trans.2.bias")).unwrap();
    let expected = PrefixAdapter::from_past(&past, 3, 1, 12).unwrap();
    assert_eq!(prefix.len(), 2);
    let ids = [5u32, 6, 7];
    let a = model.forward(&mut model.new_cache(Some(&prefix)), &ids, None, false).unwrap();
    let b = model.forward(&mut model.new_cache(Some(&expected)), &ids, None, false).unwrap();
    assert!(max_diff(&a, &b) < 1e-5);
}

#[test]
fn batch_forward_matches_single_and_trains_lora() {
    for build in [chatglm2_small as fn(&Path), chatglm6b_small] {
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path());
        let mut model = Model::load(tmp.path(), &Default::default()).unwrap();
        let rows: [[u32; 6]; 2] = [[5, 6, 129, 130, 9, 10], [11, 12, 13, 129, 130, 14]];
        let modules: Vec<String> = (0..3)
            .map(|i| match model.config().family {
                doctorglm_models::Family::ChatGlm6b => format!("transformer.layers.{i}.attention.query_key_value"),
                doctorglm_models::Family::ChatGlm2 => format!("transformer.encoder.layers.{i}.self_attention.query_key_value"),
            })
            .collect();
        let (h, out) = (48, model.config().qkv_size());
        let mut vars = Vec::new();
        let mut tensors = HashMap::new();
        for m in &modules {
            let a = Var::from_tensor(&rand(&[4, h])).unwrap();
            let b = Var::from_tensor(&rand(&[out, 4])).unwrap();
            tensors.insert(peft_name(m, false), a.as_tensor().clone());
            tensors.insert(peft_name(m, true), b.as_tensor().clone());
            vars.extend([a, b]);
        }
        let config = LoraConfig { r: 4, alpha: 8.0, target_modules: vec!["query_key_value".into()], use_rslora: false };
        model.add_lora_tensors("train", config, tensors).unwrap();
        let ids = Tensor::new(&rows, &Device::Cpu).unwrap();
        let batch = model.forward_batch(&ids, Some("train")).unwrap();
        assert_eq!(batch.dims(), &[2, 6, VOCAB]);
        for (i, row) in rows.iter().enumerate() {
            let single = model.forward(&mut model.new_cache(None), row, Some("train"), true).unwrap();
            assert!(max_diff(&batch.get(i).unwrap(), &single) < 1e-4, "row {i} differs");
        }
        let loss = batch.sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        for v in &vars {
            let g = grads.get(v.as_tensor()).expect("a LoRA matrix got no gradient");
            let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(norm > 0.0);
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    chatglm2_small(tmp.path());
    let model = Model::load(tmp.path(), &Default::default()).unwrap();
    let mut cache = model.new_cache(None);
    assert!(model.forward(&mut cache, &[], None, false).is_err());
    let err = model.forward(&mut cache, &[VOCAB as u32], None, false).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
    let too_long: Vec<u32> = (0..257).map(|i| (i % 100) as u32).collect();
    let err = model.forward(&mut cache, &too_long, None, false).unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
    assert!(cache.tokens().is_empty(), "a refused input changed the cache");
}
