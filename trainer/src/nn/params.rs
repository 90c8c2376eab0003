//! Named trainable tensors, created deterministically from a seed.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every trainable tensor of a model, by name. A `BTreeMap` so that
/// iteration (optimizer updates, checkpoints, gradient norms) has one order.
pub struct Params {
    vars: BTreeMap<String, Var>,
    device: Device,
    rng: ChaCha8Rng,
}

impl Params {
    pub fn new(seed: u64, device: &Device) -> Params {
        Params { vars: BTreeMap::new(), device: device.clone(), rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A new parameter drawn from N(0, std²) (Box-Muller over the seeded RNG).
    pub fn normal(&mut self, name: &str, shape: &[usize], std: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let u1: f64 = self.rng.gen_range(f64::MIN_POSITIVE..1.0);
            let u2: f64 = self.rng.gen();
            let r = (-2.0 * u1.ln()).sqrt();
            let t = std::f64::consts::TAU * u2;
            v.push((std * r * t.cos()) as f32);
            v.push((std * r * t.sin()) as f32);
        }
        v.truncate(n);
        self.insert(name, Tensor::from_vec(v, shape, &self.device)?)
    }

    pub fn constant(&mut self, name: &str, shape: &[usize], value: f64) -> Result<Tensor> {
        let t = (Tensor::ones(shape, DType::F32, &self.device)? * value)?;
        self.insert(name, t)
    }

    fn insert(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        if self.vars.contains_key(name) {
            candle_core::bail!("parameter {name} defined twice");
        }
        let var = Var::from_tensor(&t)?;
        let tensor = var.as_tensor().clone();
        self.vars.insert(name.to_string(), var);
        Ok(tensor)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.vars.get(name).map(|v| v.as_tensor())
    }

    /// Number of scalar parameters whose name starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.vars.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.elem_count()).sum()
    }

    /// The current values, for saving.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }

    /// Overwrites every parameter from `saved`; every name must be there with
    /// the same shape (a checkpoint of a different model is an error).
    pub fn load(&self, saved: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in &self.vars {
            let t = saved.get(name).ok_or_else(|| candle_core::Error::Msg(format!("parameter {name} is missing")))?;
            if t.shape() != var.shape() {
                candle_core::bail!("parameter {name}: shape {:?} saved, {:?} expected", t.shape(), var.shape());
            }
            var.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        Ok(())
    }
}
