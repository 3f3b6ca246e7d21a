//! Optimizers over candle `Var`s (AdamW as PyTorch has it, Lion), gradient clipping by global
//! norm, and learning-rate schedules.
//!
//! AdamW follows PyTorch's `torch.optim.AdamW` step for step (decoupled weight decay
//! `p ← p·(1 − lr·wd)` first, bias-corrected moments, `eps` added outside the square root); the
//! golden test checks it against PyTorch's numbers and a unit test against candle-nn's `AdamW`
//! (same formula). It is written here rather than taken from candle-nn because a training job
//! must save and restore the moments to resume after a stop, and candle-nn keeps them private.
//! Lion is written here too (candle-nn has none). Both implement `candle_nn::Optimizer`.
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::Optimizer as _;

pub use candle_nn::ParamsAdamW;

/// PyTorch's AdamW with moments that can be saved and restored.
#[derive(Debug)]
pub struct AdamW {
    /// `(parameter, first moment, second moment)`.
    vars: Vec<(Var, Var, Var)>,
    params: ParamsAdamW,
    steps: usize,
}

impl candle_nn::Optimizer for AdamW {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<Self> {
        let vars = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|v| {
                let m = Var::zeros(v.shape(), v.dtype(), v.device())?;
                let s = Var::zeros(v.shape(), v.dtype(), v.device())?;
                Ok((v, m, s))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { vars, params, steps: 0 })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.steps += 1;
        let ParamsAdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.params;
        let t = i32::try_from(self.steps).unwrap_or(i32::MAX);
        let bias1 = 1.0 - beta1.powi(t);
        let bias2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        for (theta, m, v) in &self.vars {
            let Some(g) = grads.get(theta) else { continue };
            let decayed = (theta.as_tensor() * (1.0 - lr * weight_decay))?;
            let next_m = ((m.as_tensor() * beta1)? + (g * (1.0 - beta1))?)?;
            let next_v = ((v.as_tensor() * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let denom = ((next_v.sqrt()? / bias2_sqrt)? + eps)?;
            let update = ((&next_m / denom)? * (lr / bias1))?;
            theta.set(&(decayed - update)?)?;
            m.set(&next_m)?;
            v.set(&next_v)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr
    }
}

/// An optimizer's resumable state: the step count and, per parameter (in the order the
/// optimizer was built with), its moment tensors.
#[derive(Debug, Clone)]
pub struct OptimizerState {
    /// Updates done.
    pub steps: usize,
    /// Per parameter: `exp_avg` (AdamW, Lion) then `exp_avg_sq` (AdamW only).
    pub moments: Vec<Vec<Tensor>>,
}

/// Copies saved moments into an optimizer's variables, checking count and shapes.
fn restore_moments(slots: &[Vec<&Var>], state: &OptimizerState) -> candle_core::Result<()> {
    if slots.len() != state.moments.len() {
        candle_core::bail!(
            "the saved optimizer state has {} parameters, this run has {}",
            state.moments.len(),
            slots.len()
        );
    }
    for (i, (vars, saved)) in slots.iter().zip(&state.moments).enumerate() {
        if vars.len() != saved.len() {
            candle_core::bail!("parameter {i}: {} saved moments, this optimizer needs {}", saved.len(), vars.len());
        }
        for (var, t) in vars.iter().zip(saved) {
            if var.dims() != t.dims() {
                candle_core::bail!("parameter {i}: saved moment has shape {:?}, needs {:?}", t.dims(), var.dims());
            }
            var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
    }
    Ok(())
}

impl AdamW {
    /// The settings in use.
    pub fn params(&self) -> &ParamsAdamW {
        &self.params
    }

    /// Step count and moments, for a checkpoint.
    pub fn state(&self) -> candle_core::Result<OptimizerState> {
        Ok(OptimizerState {
            steps: self.steps,
            moments: self
                .vars
                .iter()
                .map(|(_, m, v)| Ok(vec![m.as_tensor().copy()?, v.as_tensor().copy()?]))
                .collect::<candle_core::Result<_>>()?,
        })
    }

    /// Restores step count and moments saved by [`AdamW::state`].
    pub fn load_state(&mut self, state: &OptimizerState) -> candle_core::Result<()> {
        let slots: Vec<Vec<&Var>> = self.vars.iter().map(|(_, m, v)| vec![m, v]).collect();
        restore_moments(&slots, state)?;
        self.steps = state.steps;
        Ok(())
    }
}

/// Settings of the Lion optimizer (Chen et al., 2023).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParamsLion {
    /// Learning rate.
    pub lr: f64,
    /// Interpolation factor of the update direction.
    pub beta1: f64,
    /// Decay of the momentum.
    pub beta2: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for ParamsLion {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.0,
        }
    }
}

/// Lion: `p ← p·(1 − lr·wd) − lr·sign(β1·m + (1 − β1)·g)`, then `m ← β2·m + (1 − β2)·g`,
/// with `m` starting at zero.
#[derive(Debug)]
pub struct Lion {
    vars: Vec<(Var, Var)>,
    params: ParamsLion,
    steps: usize,
}

impl candle_nn::Optimizer for Lion {
    type Config = ParamsLion;

    fn new(vars: Vec<Var>, params: ParamsLion) -> candle_core::Result<Self> {
        let vars = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|v| {
                let m = Var::zeros(v.shape(), v.dtype(), v.device())?;
                Ok((v, m))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { vars, params, steps: 0 })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.steps += 1;
        let ParamsLion {
            lr,
            beta1,
            beta2,
            weight_decay,
        } = self.params;
        for (theta, m) in &self.vars {
            let Some(g) = grads.get(theta) else { continue };
            let direction = ((m.as_tensor() * beta1)? + (g * (1.0 - beta1))?)?.sign()?;
            let decayed = (theta.as_tensor() * (1.0 - lr * weight_decay))?;
            theta.set(&(decayed - (direction * lr)?)?)?;
            m.set(&((m.as_tensor() * beta2)? + (g * (1.0 - beta2))?)?)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr
    }
}

impl Lion {
    /// The settings in use.
    pub fn params(&self) -> &ParamsLion {
        &self.params
    }

    /// Step count and momentum, for a checkpoint.
    pub fn state(&self) -> candle_core::Result<OptimizerState> {
        Ok(OptimizerState {
            steps: self.steps,
            moments: self
                .vars
                .iter()
                .map(|(_, m)| Ok(vec![m.as_tensor().copy()?]))
                .collect::<candle_core::Result<_>>()?,
        })
    }

    /// Restores step count and momentum saved by [`Lion::state`].
    pub fn load_state(&mut self, state: &OptimizerState) -> candle_core::Result<()> {
        let slots: Vec<Vec<&Var>> = self.vars.iter().map(|(_, m)| vec![m]).collect();
        restore_moments(&slots, state)?;
        self.steps = state.steps;
        Ok(())
    }
}

/// Which optimizer and with what settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// PyTorch's AdamW.
    AdamW {
        /// Learning rate.
        lr: f64,
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Added to the denominator, outside the square root.
        eps: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
    /// Lion.
    Lion {
        /// Learning rate.
        lr: f64,
        /// Interpolation factor of the update direction.
        beta1: f64,
        /// Decay of the momentum.
        beta2: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    /// The DoctorGLM paper's choice: Lion at learning rate 2e-5 (betas 0.9/0.99, no decay).
    pub fn paper_default() -> Self {
        Self::Lion {
            lr: 2e-5,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.0,
        }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            Self::AdamW { lr, .. } | Self::Lion { lr, .. } => lr,
        }
    }
}

/// An optimizer of either kind over a fixed set of trainable variables.
#[derive(Debug)]
pub enum TrainOptimizer {
    /// AdamW (PyTorch semantics).
    AdamW(AdamW),
    /// Lion.
    Lion(Lion),
}

impl TrainOptimizer {
    /// Builds the optimizer over `vars` (non-float variables are ignored).
    pub fn new(vars: Vec<Var>, config: &OptimizerConfig) -> candle_core::Result<Self> {
        Ok(match *config {
            OptimizerConfig::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => Self::AdamW(AdamW::new(
                vars,
                ParamsAdamW {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                },
            )?),
            OptimizerConfig::Lion {
                lr,
                beta1,
                beta2,
                weight_decay,
            } => Self::Lion(Lion::new(
                vars,
                ParamsLion {
                    lr,
                    beta1,
                    beta2,
                    weight_decay,
                },
            )?),
        })
    }

    /// Applies one update from the gradients.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        match self {
            Self::AdamW(o) => o.step(grads),
            Self::Lion(o) => o.step(grads),
        }
    }

    /// The current learning rate.
    pub fn learning_rate(&self) -> f64 {
        match self {
            Self::AdamW(o) => o.learning_rate(),
            Self::Lion(o) => o.learning_rate(),
        }
    }

    /// Step count and moments, for a checkpoint.
    pub fn state(&self) -> candle_core::Result<OptimizerState> {
        match self {
            Self::AdamW(o) => o.state(),
            Self::Lion(o) => o.state(),
        }
    }

    /// Restores a state saved by [`TrainOptimizer::state`] from an optimizer of the same kind
    /// over the same parameters.
    pub fn load_state(&mut self, state: &OptimizerState) -> candle_core::Result<()> {
        match self {
            Self::AdamW(o) => o.load_state(state),
            Self::Lion(o) => o.load_state(state),
        }
    }

    /// Sets the learning rate (for schedules).
    pub fn set_learning_rate(&mut self, lr: f64) {
        match self {
            Self::AdamW(o) => o.set_learning_rate(lr),
            Self::Lion(o) => o.set_learning_rate(lr),
        }
    }
}

/// The global L2 norm of the gradients of `vars` (those without a gradient count as zero).
pub fn global_grad_norm(vars: &[Var], grads: &GradStore) -> candle_core::Result<f64> {
    let mut sum = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let s = g
                .to_dtype(candle_core::DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
            sum += s;
        }
    }
    Ok(sum.sqrt())
}

/// Scales the gradients of `vars` so that their global L2 norm is at most `max_norm`, as
/// PyTorch's `clip_grad_norm_` does (factor `max_norm / (norm + 1e-6)`, never above 1).
/// Returns the norm before clipping.
pub fn clip_grad_norm(vars: &[Var], grads: &mut GradStore, max_norm: f64) -> candle_core::Result<f64> {
    let norm = global_grad_norm(vars, grads)?;
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled: Tensor = (g * factor)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

/// Learning rate over the steps of a run: a linear warm-up from 0, then constant, linear decay
/// to 0 or cosine decay to 0 at `total_steps` (Hugging Face's schedules).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    /// Shape after the warm-up.
    pub kind: ScheduleKind,
    /// Steps of linear warm-up.
    pub warmup_steps: usize,
    /// Steps of the whole run (used by the decaying kinds).
    pub total_steps: usize,
}

/// The shape of a schedule after its warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The base rate throughout.
    Constant,
    /// Linear decay to 0 at the last step.
    Linear,
    /// Half a cosine down to 0 at the last step.
    Cosine,
}

impl LrSchedule {
    /// A constant rate, no warm-up.
    pub fn constant() -> Self {
        Self {
            kind: ScheduleKind::Constant,
            warmup_steps: 0,
            total_steps: 0,
        }
    }

    /// The factor (0 to 1) that multiplies the base rate at `step` (0-based: the rate used for
    /// the update made at that step).
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps);
        let progress = if decay_steps == 0 {
            0.0
        } else {
            ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0)
        };
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => 1.0 - progress,
            ScheduleKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }

    /// The rate at `step` for a base rate.
    pub fn lr(&self, base_lr: f64, step: usize) -> f64 {
        base_lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn grads_for(var: &Var, g: &[f32]) -> GradStore {
        // d(sum(var * g))/dvar = g.
        let gt = Tensor::new(g, &Device::Cpu).unwrap();
        (var.as_tensor() * &gt).unwrap().sum_all().unwrap().backward().unwrap()
    }

    #[test]
    fn lion_matches_its_formula_over_two_steps() {
        let p0 = [0.5f32, -0.2, 0.0, 1.0];
        let var = Var::new(&p0, &Device::Cpu).unwrap();
        let params = ParamsLion {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.5,
        };
        let mut opt = Lion::new(vec![var.clone()], params).unwrap();
        let (g1, g2) = ([1.0f32, -2.0, 0.0, 3.0], [-1.0f32, -1.0, 2.0, -0.1]);
        opt.step(&grads_for(&var, &g1)).unwrap();
        opt.step(&grads_for(&var, &g2)).unwrap();
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        let sign = |x: f64| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { 0.0 };
        for i in 0..4 {
            let (mut p, mut m) = (p0[i] as f64, 0.0f64);
            for g in [g1[i] as f64, g2[i] as f64] {
                p = p * (1.0 - 0.1 * 0.5) - 0.1 * sign(0.9 * m + 0.1 * g);
                m = 0.99 * m + 0.01 * g;
            }
            assert!((got[i] as f64 - p).abs() < 1e-6, "{i}: {} vs {p}", got[i]);
        }
    }

    #[test]
    fn adamw_matches_pytorch_formula_over_two_steps() {
        let p0 = [0.5f32, -0.2, 0.3];
        let var = Var::new(&p0, &Device::Cpu).unwrap();
        let config = OptimizerConfig::AdamW {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = TrainOptimizer::new(vec![var.clone()], &config).unwrap();
        let (g1, g2) = ([0.3f32, -1e-3, 2.0], [0.1f32, 0.5, -2.0]);
        opt.step(&grads_for(&var, &g1)).unwrap();
        opt.step(&grads_for(&var, &g2)).unwrap();
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        // torch.optim.AdamW, written out: decay, moments, bias corrections, eps outside sqrt.
        for i in 0..3 {
            let (mut p, mut m, mut v) = (p0[i] as f64, 0.0f64, 0.0f64);
            for (t, g) in [(1, g1[i] as f64), (2, g2[i] as f64)] {
                p *= 1.0 - 0.01 * 0.1;
                m = 0.9 * m + 0.1 * g;
                v = 0.999 * v + 0.001 * g * g;
                let bc1 = 1.0 - 0.9f64.powi(t);
                let bc2 = 1.0 - 0.999f64.powi(t);
                p -= 0.01 / bc1 * m / (v.sqrt() / bc2.sqrt() + 1e-8);
            }
            assert!((got[i] as f64 - p).abs() < 1e-6, "{i}: {} vs {p}", got[i]);
        }
    }

    #[test]
    fn adamw_equals_candle_nn_adamw() {
        let p0 = [0.5f32, -0.2, 0.3, 1.5];
        let ours = Var::new(&p0, &Device::Cpu).unwrap();
        let theirs = Var::new(&p0, &Device::Cpu).unwrap();
        let params = ParamsAdamW {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut a = AdamW::new(vec![ours.clone()], params.clone()).unwrap();
        let mut b = candle_nn::AdamW::new(vec![theirs.clone()], params).unwrap();
        for g in [[0.3f32, -1e-3, 2.0, 0.0], [0.1, 0.5, -2.0, 1e-6], [-0.4, 0.2, 0.2, 3.0]] {
            a.step(&grads_for(&ours, &g)).unwrap();
            b.step(&grads_for(&theirs, &g)).unwrap();
        }
        let (x, y) = (ours.as_tensor().to_vec1::<f32>().unwrap(), theirs.as_tensor().to_vec1::<f32>().unwrap());
        for (u, w) in x.iter().zip(&y) {
            assert!((u - w).abs() < 1e-6, "{x:?} vs {y:?}");
        }
    }

    #[test]
    fn resumed_optimizer_continues_exactly() {
        for config in [
            OptimizerConfig::AdamW { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 },
            OptimizerConfig::Lion { lr: 0.01, beta1: 0.9, beta2: 0.99, weight_decay: 0.1 },
        ] {
            let gs = [[0.3f32, -0.5, 2.0], [0.1, 0.5, -2.0], [-0.4, 0.2, 0.7], [0.9, -0.1, 0.05]];
            let straight = Var::new(&[0.5f32, -0.2, 0.3], &Device::Cpu).unwrap();
            let mut opt = TrainOptimizer::new(vec![straight.clone()], &config).unwrap();
            for g in &gs {
                opt.step(&grads_for(&straight, g)).unwrap();
            }
            // Two steps, save, a fresh optimizer restores and does the other two.
            let first = Var::new(&[0.5f32, -0.2, 0.3], &Device::Cpu).unwrap();
            let mut opt = TrainOptimizer::new(vec![first.clone()], &config).unwrap();
            for g in &gs[..2] {
                opt.step(&grads_for(&first, g)).unwrap();
            }
            let state = opt.state().unwrap();
            assert_eq!(state.steps, 2);
            let resumed = Var::from_tensor(first.as_tensor()).unwrap();
            let mut opt = TrainOptimizer::new(vec![resumed.clone()], &config).unwrap();
            opt.load_state(&state).unwrap();
            for g in &gs[2..] {
                opt.step(&grads_for(&resumed, g)).unwrap();
            }
            assert_eq!(
                resumed.as_tensor().to_vec1::<f32>().unwrap(),
                straight.as_tensor().to_vec1::<f32>().unwrap(),
                "{config:?}"
            );
            // A state for other parameters is refused.
            let other = Var::new(&[0.0f32; 5], &Device::Cpu).unwrap();
            let mut opt = TrainOptimizer::new(vec![other], &config).unwrap();
            assert!(opt.load_state(&state).is_err());
        }
    }

    #[test]
    fn clipping_scales_to_max_norm_and_leaves_small_grads() {
        let a = Var::new(&[3.0f32, 0.0], &Device::Cpu).unwrap();
        let b = Var::new(&[0.0f32], &Device::Cpu).unwrap();
        let loss = ((a.as_tensor() * 1.0).unwrap().sum_all().unwrap()
            + (b.as_tensor() * 1.0).unwrap().sum_all().unwrap())
        .unwrap();
        let mut grads = (loss * 2.0).unwrap().backward().unwrap();
        let vars = vec![a.clone(), b.clone()];
        // Gradients are all 2.0: norm sqrt(3)*2.
        let norm = clip_grad_norm(&vars, &mut grads, 1.0).unwrap();
        assert!((norm - 2.0 * 3f64.sqrt()).abs() < 1e-6);
        let after = global_grad_norm(&vars, &grads).unwrap();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        let before = grads.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let norm = clip_grad_norm(&vars, &mut grads, 10.0).unwrap();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(grads.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), before);
    }

    #[test]
    fn schedules_warm_up_and_decay() {
        let s = LrSchedule {
            kind: ScheduleKind::Linear,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert_eq!(s.factor(0), 0.0);
        assert!((s.factor(5) - 0.5).abs() < 1e-12);
        assert_eq!(s.factor(10), 1.0);
        assert!((s.factor(60) - 0.5).abs() < 1e-12);
        assert_eq!(s.factor(110), 0.0);
        assert_eq!(s.factor(500), 0.0);
        let c = LrSchedule { kind: ScheduleKind::Cosine, ..s };
        assert!((c.factor(60) - 0.5).abs() < 1e-12);
        assert!(c.factor(35) > s.factor(35));
        assert!(c.factor(110).abs() < 1e-12);
        assert_eq!(LrSchedule::constant().lr(2e-5, 1000), 2e-5);
    }
}
