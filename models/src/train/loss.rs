//! The causal-LM loss: mean cross-entropy over positions whose label is not -100, with labels
//! shifted left by one (Hugging Face convention: the logits at position t predict label t + 1).
use super::TrainError;
use candle_core::{DType, Tensor, D};

/// The label value that marks a position as not scored.
pub const IGNORE_INDEX: i64 = -100;

/// Mean cross-entropy of `logits` `[batch, seq, vocab]` against `labels` `[batch, seq]`
/// (any integer dtype; -100 = ignore). Differentiable with respect to the logits.
///
/// Only the scored rows are gathered before the softmax, so memory stays proportional to the
/// number of label tokens, not to batch × sequence × vocabulary.
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor, TrainError> {
    let (batch, seq, vocab) = logits.dims3().map_err(|_| TrainError::Shape {
        what: "logits",
        expected: "[batch, seq, vocab]".into(),
        got: logits.dims().to_vec(),
    })?;
    let (rows, targets) = scored_positions(labels, batch, seq, vocab)?;
    let picked = logits.reshape((batch * seq, vocab))?.index_select(&rows, 0)?;
    cross_entropy(&picked, &targets)
}

/// The rows (`b * seq + t`, u32 `[n]`) whose next label is scored, and those labels (u32
/// `[n, 1]`), for `labels` `[batch, seq]` (-100 = ignore); errors for labels outside the
/// vocabulary or when nothing is scored.
pub fn scored_positions(labels: &Tensor, batch: usize, seq: usize, vocab: usize) -> Result<(Tensor, Tensor), TrainError> {
    if labels.dims() != [batch, seq] {
        return Err(TrainError::Shape {
            what: "labels",
            expected: format!("[{batch}, {seq}] (as the logits)"),
            got: labels.dims().to_vec(),
        });
    }
    let device = labels.device();
    let labels = labels.to_dtype(DType::I64)?.to_vec2::<i64>()?;
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (b, row) in labels.iter().enumerate() {
        for t in 0..seq.saturating_sub(1) {
            let label = row[t + 1];
            if label == IGNORE_INDEX {
                continue;
            }
            if label < 0 || label as usize >= vocab {
                return Err(TrainError::LabelOutOfRange {
                    label,
                    sample: b,
                    position: t + 1,
                    vocab,
                });
            }
            rows.push((b * seq + t) as u32);
            targets.push(label as u32);
        }
    }
    if rows.is_empty() {
        return Err(TrainError::NoLabels);
    }
    let n = rows.len();
    Ok((Tensor::from_vec(rows, n, device)?, Tensor::from_vec(targets, (n, 1), device)?))
}

/// Mean cross-entropy of logits `[n, vocab]` (the scored rows) against targets u32 `[n, 1]`.
pub fn cross_entropy(picked: &Tensor, targets: &Tensor) -> Result<Tensor, TrainError> {
    let picked = picked.to_dtype(DType::F32)?;
    // log-softmax with the row maximum held constant (it cancels in the gradient).
    let max = picked.max_keepdim(D::Minus1)?.detach();
    let shifted = picked.broadcast_sub(&max)?;
    let log_norm = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let target_logit = shifted.gather(targets, D::Minus1)?;
    let nll = (log_norm - target_logit)?;
    Ok(nll.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_hand_computed_cross_entropy_with_shift_and_ignore() {
        let dev = Device::Cpu;
        let values: Vec<f32> = (0..2 * 3 * 4).map(|i| ((i * 7) % 5) as f32 * 0.3 - 0.4).collect();
        let logits = Tensor::from_vec(values.clone(), (2, 3, 4), &dev).unwrap();
        let labels = Tensor::new(&[[-100i64, 2, 1], [-100, -100, 3]], &dev).unwrap();
        let loss = causal_lm_loss(&logits, &labels).unwrap().to_scalar::<f32>().unwrap();
        let ce = |b: usize, t: usize, y: usize| {
            let row = &values[(b * 3 + t) * 4..(b * 3 + t) * 4 + 4];
            let lse = row.iter().map(|x| x.exp()).sum::<f32>().ln();
            lse - row[y]
        };
        // Scored: (b0, t0 → label 2), (b0, t1 → 1), (b1, t1 → 3).
        let expected = (ce(0, 0, 2) + ce(0, 1, 1) + ce(1, 1, 3)) / 3.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn gradient_is_softmax_minus_onehot_over_count() {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[[[0.1f32, 0.7, -0.3], [0.0, 0.0, 0.0]]], &dev).unwrap())
            .unwrap();
        let labels = Tensor::new(&[[-100i64, 1]], &dev).unwrap();
        let loss = causal_lm_loss(var.as_tensor(), &labels).unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap().to_vec3::<f32>().unwrap();
        let e: Vec<f32> = [0.1f32, 0.7, -0.3].iter().map(|x| x.exp()).collect();
        let s: f32 = e.iter().sum();
        for k in 0..3 {
            let want = e[k] / s - if k == 1 { 1.0 } else { 0.0 };
            assert!((g[0][0][k] - want).abs() < 1e-6);
            assert_eq!(g[0][1][k], 0.0);
        }
    }

    #[test]
    fn bad_labels_are_errors() {
        let dev = Device::Cpu;
        let logits = Tensor::zeros((1, 3, 4), DType::F32, &dev).unwrap();
        let none = Tensor::new(&[[5i64, -100, -100]], &dev).unwrap();
        assert!(matches!(causal_lm_loss(&logits, &none), Err(TrainError::NoLabels)));
        let big = Tensor::new(&[[0i64, 4, -100]], &dev).unwrap();
        assert!(matches!(
            causal_lm_loss(&logits, &big),
            Err(TrainError::LabelOutOfRange { label: 4, .. })
        ));
        let shape = Tensor::new(&[[0i64, 1]], &dev).unwrap();
        assert!(matches!(causal_lm_loss(&logits, &shape), Err(TrainError::Shape { .. })));
    }
}
