//! PyTorch weights in Flax's layout: a `state_dict` (saved with `safetensors.torch.save_file`)
//! converted to Flax variables with the conversions of the spec's "Convert PyTorch models to
//! Flax" guide.
//!
//! ```no_run
//! use flax::serialization::pytorch::TorchImport;
//! # fn run(variables: flax::Variables) -> flax::Result<()> {
//! let bytes = std::fs::read("model.safetensors").map_err(|e| flax::Error::io("model.safetensors", e))?;
//! // `variables` from `model.init(...)`: the import must fit it exactly.
//! let variables = TorchImport::new().rename("encoder", "backbone").import_safetensors_into(&variables, &bytes)?;
//! # Ok(()) }
//! ```
//!
//! # Tensors
//! Each PyTorch module's tensors (the keys sharing a prefix: `fc.weight`, `fc.bias`) become one
//! Flax module's variables, by the kind of layer ([`TorchLayer`]), which is inferred (running
//! statistics: BatchNorm; a 2-d weight: Linear; 3- to 5-d: Conv; 1-d: a norm's scale) or given
//! with [`TorchImport::layer`] (e.g. for an `Embedding`, whose 2-d weight is not transposed):
//! - Linear: `weight [out, in]` → `params/kernel [in, out]`, `bias` → `bias`.
//! - Conv1d/2d/3d: `weight [out, in/groups, *window]` (OIW, OIHW, OIDHW) →
//!   `kernel [*window, in/groups, out]` (WIO, HWIO, DHWIO), `bias` → `bias`. Flax's `Conv`
//!   pads `"SAME"` by default where PyTorch pads 0: use `padding: VALID` (or PyTorch's explicit
//!   padding). Inputs are channels-last here; a Conv → Linear model must transpose its
//!   activations to NCHW before flattening, as the guide says, or permute the Linear's rows.
//! - BatchNorm: `weight` → `params/scale`, `bias` → `params/bias`, `running_mean` →
//!   `batch_stats/mean`, `running_var` → `batch_stats/var`; `num_batches_tracked` is dropped.
//!   Momentum is mirrored: PyTorch's `momentum=0.1` is Flax's `momentum=0.9` (Flax keeps
//!   `momentum` of the running statistic, PyTorch `1 - momentum`); PyTorch's `momentum=None`
//!   (a cumulative average) has no Flax equivalent. `eps` is 1e-5 in both. In inference the two
//!   compute the same; in training PyTorch updates the running variance with the unbiased batch
//!   variance and Flax with the biased one.
//! - LayerNorm / GroupNorm: `weight` → `params/scale`, `bias` → `params/bias` (PyTorch's `eps`
//!   is 1e-5, Flax's default `epsilon` 1e-6).
//! - Embedding: `weight [num, features]` → `params/embedding`, unchanged.
//!
//! # Names
//! A PyTorch module path (`features.3`) becomes a Flax module path (`/`-separated) by the first
//! of: a [`TorchImport::rename`] entry for it or for its longest prefix (the rest is mapped by
//! the default rule and appended), the [`TorchImport::rename_with`] closure, and the default
//! rule, which follows how Flax names the same structure:
//! - a number after a name joins it, as Flax names the modules of a list field:
//!   `blocks.0` (a `ModuleList`) → `blocks_0`;
//! - a number first, or after another number, is an `nn.Sequential` index, which Flax names
//!   `layers_<i>`: `0.weight` of `nn.Sequential(Linear, ReLU, Linear)` → `layers_0/kernel`, and
//!   its second Linear `2.weight` → `layers_2/kernel` — the names Flax's
//!   `nn.Sequential([nn.Dense(..), nn.relu, nn.Dense(..)])` gives, with the same gap;
//! - other names are kept: `encoder.fc` → `encoder/fc`.
//!
//! The conversion is strict: a tensor it does not understand, a rank that does not fit the
//! layer, or two tensors landing on the same Flax path are all reported in one
//! [`Error::StateDictMismatch`] (unexpected: the PyTorch keys; mismatched: the reasons).
//! [`TorchImport::import_safetensors_into`] then restores into the model's variables as
//! strictly as [`from_state_dict`](super::from_state_dict).

use super::safetensors::{insert_path, read_tensors};
use super::{from_state_dict_with, RestoreOptions};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Variables};
use std::fmt;
use tch::Tensor;

/// The kind of PyTorch layer a module's tensors come from, which decides their Flax names and
/// layouts (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchLayer {
    /// `torch.nn.Linear` → `nn::Dense`: the weight is transposed.
    Linear,
    /// `torch.nn.Conv1d/2d/3d` → `nn::Conv`: the weight goes from OI… to …IO.
    Conv,
    /// `torch.nn.BatchNorm1d/2d/3d` → `nn::BatchNorm`: running statistics go to `batch_stats`.
    BatchNorm,
    /// `torch.nn.LayerNorm` / `GroupNorm` → `nn::LayerNorm` / `GroupNorm`: `weight` is `scale`.
    Norm,
    /// `torch.nn.Embedding` → `nn::Embed`: `weight` is `embedding`, unchanged.
    Embedding,
}

/// A PyTorch module path to a Flax module path.
type RenameFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Converts PyTorch `state_dict`s to Flax variables: the names, layer kinds and conversions of
/// the [module docs](self), adjustable per module.
#[derive(Default)]
pub struct TorchImport {
    renames: Vec<(String, String)>,
    rename_fn: Option<Box<RenameFn>>,
    layers: Vec<(String, TorchLayer)>,
}

impl fmt::Debug for TorchImport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TorchImport")
            .field("renames", &self.renames)
            .field("rename_fn", &self.rename_fn.as_ref().map(|_| "<closure>"))
            .field("layers", &self.layers)
            .finish()
    }
}

impl TorchImport {
    /// The default names and inferred layer kinds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps the PyTorch module `torch_prefix` (e.g. `"0"`, `"encoder.fc"`) and everything under
    /// it to the Flax module path `flax_path` (e.g. `"hidden"`, `"backbone/fc"`; `""` is the
    /// root). The longest matching prefix wins.
    pub fn rename(mut self, torch_prefix: impl Into<String>, flax_path: impl Into<String>) -> Self {
        self.renames.push((torch_prefix.into(), flax_path.into()));
        self
    }

    /// Maps PyTorch module paths that no [`rename`](Self::rename) entry covers with `rename`:
    /// `Some(flax_path)`, or `None` for the default rule.
    pub fn rename_with(mut self, rename: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.rename_fn = Some(Box::new(rename));
        self
    }

    /// Declares the kind of layer of the PyTorch module `torch_module` instead of inferring it
    /// (needed for `Embedding`, whose 2-d weight would be taken for a Linear's).
    pub fn layer(mut self, torch_module: impl Into<String>, layer: TorchLayer) -> Self {
        self.layers.push((torch_module.into(), layer));
        self
    }

    /// Converts named PyTorch tensors (a `state_dict`'s items) to Flax variables:
    /// `{"params": …, "batch_stats": …}` (the latter only if there are running statistics).
    pub fn convert(&self, state_dict: impl IntoIterator<Item = (String, Tensor)>) -> Result<Variables> {
        let mut report = Report::default();
        let mut modules: Vec<(String, Vec<(String, Tensor)>)> = Vec::new();
        for (key, tensor) in state_dict {
            let (module, name) = key.rsplit_once('.').unwrap_or(("", &key));
            let (module, name) = (module.to_owned(), name.to_owned());
            match modules.iter_mut().find(|(m, _)| *m == module) {
                Some((_, tensors)) => tensors.push((name, tensor)),
                None => modules.push((module, vec![(name, tensor)])),
            }
        }
        let mut variables = FrozenDict::new();
        for (module, tensors) in modules {
            let flax_path = self.flax_path(&module);
            let layer = self.layer_of(&module, &tensors);
            for (name, tensor) in tensors {
                let key = if module.is_empty() { name.clone() } else { format!("{module}.{name}") };
                match convert_tensor(layer, &name, tensor)? {
                    Converted::Variable { collection, name, tensor } => {
                        let mut path = vec![collection];
                        path.extend(flax_path.iter().map(String::as_str));
                        path.push(name);
                        // Names are never suffixed: a second tensor for one path is an error.
                        if insert_path(&mut variables, &path, tensor).is_err() {
                            report
                                .mismatched
                                .push(format!("{key}: lands on {}, which is taken", path.join("/")));
                        }
                    }
                    Converted::Dropped => {}
                    Converted::Unexpected => report.unexpected.push(key),
                    Converted::Mismatched(reason) => report.mismatched.push(format!("{key}: {reason}")),
                }
            }
        }
        report.finish(variables)
    }

    /// [`convert`](Self::convert)s the tensors of a PyTorch `state_dict` saved with
    /// `safetensors.torch.save_file`.
    pub fn import_safetensors(&self, bytes: &[u8]) -> Result<Variables> {
        self.convert(read_tensors(bytes)?)
    }

    /// [`import_safetensors`](Self::import_safetensors), then restores the result into
    /// `target` (a model's initialised variables) strictly: every variable missing from the
    /// file, unexpected or of another shape or dtype is reported in one
    /// [`Error::StateDictMismatch`]. Tensors move to the target's devices.
    pub fn import_safetensors_into(&self, target: &Variables, bytes: &[u8]) -> Result<Variables> {
        from_state_dict_with(target, &self.import_safetensors(bytes)?, RestoreOptions::default())
    }

    /// The Flax module path of a PyTorch module path (see the module docs).
    fn flax_path(&self, module: &str) -> Vec<String> {
        let renamed = self
            .renames
            .iter()
            .filter_map(|(prefix, flax)| Some((prefix.len(), flax, strip_module_prefix(module, prefix)?)))
            .max_by_key(|&(len, _, _)| len);
        if let Some((_, flax, rest)) = renamed {
            let mut path: Vec<String> =
                flax.split('/').filter(|k| !k.is_empty()).map(str::to_owned).collect();
            path.extend(default_flax_path(rest));
            return path;
        }
        match self.rename_fn.as_ref().and_then(|rename| rename(module)) {
            Some(flax) => flax.split('/').filter(|k| !k.is_empty()).map(str::to_owned).collect(),
            None => default_flax_path(module),
        }
    }

    fn layer_of(&self, module: &str, tensors: &[(String, Tensor)]) -> TorchLayer {
        if let Some(&(_, layer)) = self.layers.iter().find(|(m, _)| m == module) {
            return layer;
        }
        let has = |name: &str| tensors.iter().any(|(n, _)| n == name);
        let weight_rank = tensors.iter().find(|(n, _)| n == "weight").map(|(_, t)| t.dim());
        match weight_rank {
            _ if has("running_mean") || has("running_var") => TorchLayer::BatchNorm,
            Some(1) => TorchLayer::Norm,
            Some(3..=5) => TorchLayer::Conv,
            _ => TorchLayer::Linear,
        }
    }
}

/// The rest of `module` after the module prefix `prefix` (`""` for `module` itself).
fn strip_module_prefix<'m>(module: &'m str, prefix: &str) -> Option<&'m str> {
    if prefix.is_empty() {
        return Some(module);
    }
    match module.strip_prefix(prefix)? {
        "" => Some(""),
        rest => rest.strip_prefix('.'),
    }
}

/// The default rule: `blocks.0` → `blocks_0`, a leading (or repeated) index `i` → `layers_i`.
fn default_flax_path(module: &str) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    let mut after_name = false;
    for part in module.split('.').filter(|p| !p.is_empty()) {
        let is_index = part.bytes().all(|b| b.is_ascii_digit());
        match path.last_mut() {
            Some(last) if is_index && after_name => last.push_str(&format!("_{part}")),
            _ if is_index => path.push(format!("layers_{part}")),
            _ => path.push(part.to_owned()),
        }
        after_name = !is_index;
    }
    path
}

/// What one PyTorch tensor becomes.
enum Converted {
    Variable { collection: &'static str, name: &'static str, tensor: Tensor },
    Dropped,
    Unexpected,
    Mismatched(String),
}

fn convert_tensor(layer: TorchLayer, name: &str, tensor: Tensor) -> Result<Converted> {
    use TorchLayer::*;
    let param = |name, tensor| Converted::Variable { collection: "params", name, tensor };
    let rank = tensor.dim();
    Ok(match (layer, name) {
        (_, "bias") => param("bias", tensor),
        (Linear, "weight") if rank == 2 => param("kernel", tensor.f_tr()?.f_contiguous()?),
        (Conv, "weight") if (3..=5).contains(&rank) => {
            // [out, in, *window] → [*window, in, out].
            let order: Vec<i64> = (2..rank as i64).chain([1, 0]).collect();
            param("kernel", tensor.f_permute(order.as_slice())?.f_contiguous()?)
        }
        (BatchNorm | Norm, "weight") if rank == 1 => param("scale", tensor),
        (Embedding, "weight") if rank == 2 => param("embedding", tensor),
        (BatchNorm, "running_mean") => {
            Converted::Variable { collection: "batch_stats", name: "mean", tensor }
        }
        (BatchNorm, "running_var") => Converted::Variable { collection: "batch_stats", name: "var", tensor },
        (BatchNorm, "num_batches_tracked") => Converted::Dropped,
        (_, "weight") => Converted::Mismatched(format!("{layer:?} layers have no rank-{rank} weight")),
        _ => Converted::Unexpected,
    })
}

/// The PyTorch keys that could not be converted.
#[derive(Default)]
struct Report {
    unexpected: Vec<String>,
    mismatched: Vec<String>,
}

impl Report {
    fn finish(self, variables: Variables) -> Result<Variables> {
        if self.unexpected.is_empty() && self.mismatched.is_empty() {
            Ok(variables)
        } else {
            Err(Error::StateDictMismatch {
                missing: Vec::new(),
                unexpected: self.unexpected,
                mismatched: self.mismatched,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn zeros(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn default_names_follow_flax() {
        let cases = [
            ("", vec![]),
            ("0", vec!["layers_0"]),
            ("0.1", vec!["layers_0", "layers_1"]),
            ("blocks.0", vec!["blocks_0"]),
            ("blocks.0.fc", vec!["blocks_0", "fc"]),
            ("features.3.1", vec!["features_3", "layers_1"]),
            ("encoder.fc", vec!["encoder", "fc"]),
        ];
        for (torch, flax) in cases {
            assert_eq!(default_flax_path(torch), flax, "{torch}");
        }
    }

    #[test]
    fn renames_take_the_longest_prefix_then_the_closure() {
        let import = TorchImport::new()
            .rename("encoder", "backbone")
            .rename("encoder.head", "head")
            .rename_with(|m| m.strip_prefix("dec.").map(|rest| format!("decoder/{rest}")));
        assert_eq!(import.flax_path("encoder.0"), ["backbone", "layers_0"]);
        assert_eq!(import.flax_path("encoder.head"), ["head"]);
        assert_eq!(import.flax_path("encoder.header"), ["backbone", "header"]);
        assert_eq!(import.flax_path("dec.out"), ["decoder", "out"]);
        assert_eq!(import.flax_path("other.1"), ["other_1"]);
    }

    #[test]
    fn kinds_are_inferred_from_the_tensors() {
        let vars = TorchImport::new()
            .convert([
                ("fc.weight".to_owned(), zeros(&[3, 2])),
                ("conv.weight".to_owned(), zeros(&[4, 3, 2, 5])),
                ("ln.weight".to_owned(), zeros(&[4])),
                ("bn.weight".to_owned(), zeros(&[4])),
                ("bn.running_var".to_owned(), zeros(&[4])),
                ("bn.num_batches_tracked".to_owned(), Tensor::from(3i64)),
            ])
            .unwrap();
        assert_eq!(vars.tensor(&["params", "fc", "kernel"]).unwrap().size(), [2, 3]);
        assert_eq!(vars.tensor(&["params", "conv", "kernel"]).unwrap().size(), [2, 5, 3, 4]);
        assert!(vars.tensor(&["params", "ln", "scale"]).is_some());
        assert!(vars.tensor(&["params", "bn", "scale"]).is_some());
        assert_eq!(
            vars.get_dict("batch_stats").unwrap().get_dict("bn").unwrap().keys().collect::<Vec<_>>(),
            ["var"]
        );
    }

    #[test]
    fn everything_unconvertible_is_reported_at_once() {
        let err = TorchImport::new()
            .layer("emb", TorchLayer::Embedding)
            .rename("b", "a")
            .convert([
                ("attn.in_proj_weight".to_owned(), zeros(&[6, 2])),
                ("emb.weight".to_owned(), zeros(&[6])),
                ("a.bias".to_owned(), zeros(&[2])),
                ("b.bias".to_owned(), zeros(&[2])),
                ("x.weight".to_owned(), zeros(&[1, 1, 1, 1, 1, 1])),
            ])
            .unwrap_err();
        let Error::StateDictMismatch { missing, unexpected, mismatched } = err else { panic!("{err}") };
        assert!(missing.is_empty());
        assert_eq!(unexpected, ["attn.in_proj_weight"]);
        assert_eq!(
            mismatched,
            [
                "emb.weight: Embedding layers have no rank-1 weight",
                "b.bias: lands on params/a/bias, which is taken",
                "x.weight: Linear layers have no rank-6 weight",
            ]
        );
    }
}
