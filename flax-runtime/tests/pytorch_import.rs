//! PyTorch weights and Flax-layout safetensors files, against files written by PyTorch 2.13,
//! `safetensors` 0.8 and Flax 0.12.8 (`scripts/golden/pytorch_vectors.py`, which also checks
//! every conversion with `flax.linen`'s own layers when it writes the vectors).

use flax::prelude::*;
use flax::serialization::pytorch::{TorchImport, TorchLayer};
use flax::serialization::safetensors::{
    from_safetensors, safetensors_restore, safetensors_restore_with, to_safetensors, SafetensorsOptions,
};
use flax::serialization::{from_bytes, msgpack_restore};
use flax::{Error, Value};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{path}")).unwrap()
}

/// The tensors of a safetensors file of the vectors, by name.
fn vectors(path: &str) -> FrozenDict {
    safetensors_restore(&read(path)).unwrap()
}

fn get<'a>(tree: &'a FrozenDict, path: &[&str]) -> &'a Tensor {
    tree.tensor(path).unwrap_or_else(|| panic!("no tensor at {path:?}"))
}

fn assert_close(what: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.size(), expected.size(), "{what}: shape");
    let diff = (actual - expected).abs().max().double_value(&[]);
    assert!(diff <= 1e-5, "{what}: differs by {diff}");
}

/// PyTorch's `Sequential(Linear(4, 8), ReLU(), Linear(8, 3))` as Flax names it:
/// `nn.Sequential` calls its layers `layers_<index>`, the ReLU keeping index 1.
#[module]
pub struct SequentialMlp {
    pub hidden: i64,
    pub out: i64,
}

#[module]
impl SequentialMlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(self.hidden).name("layers_0").call(cx, x)?.relu();
        nn::Dense::new(self.out).name("layers_2").call(cx, &x)
    }
}

/// The same network with names of one's own choosing.
#[module]
pub struct NamedMlp {
    pub hidden: i64,
    pub out: i64,
}

#[module]
impl NamedMlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(self.hidden).name("hidden").call(cx, x)?.relu();
        nn::Dense::new(self.out).name("out").call(cx, &x)
    }
}

#[test]
fn a_pytorch_mlp_runs_in_flax_layout_with_the_same_outputs() {
    let io = vectors("pytorch/mlp_io.safetensors");
    let (x, y) = (get(&io, &["x"]), get(&io, &["y"]));
    let model = SequentialMlp::new(8, 3);
    let variables = model.init(PRNGKey::new(0), x).unwrap();
    let imported =
        TorchImport::new().import_safetensors_into(&variables, &read("pytorch/mlp.safetensors")).unwrap();
    assert_close("mlp", &model.apply(&imported, x).unwrap(), y);
}

#[test]
fn a_name_table_maps_pytorch_modules_to_chosen_flax_names() {
    let io = vectors("pytorch/mlp_io.safetensors");
    let (x, y) = (get(&io, &["x"]), get(&io, &["y"]));
    let model = NamedMlp::new(8, 3);
    let variables = model.init(PRNGKey::new(0), x).unwrap();
    let import = TorchImport::new().rename("0", "hidden").rename("2", "out");
    let imported = import.import_safetensors_into(&variables, &read("pytorch/mlp.safetensors")).unwrap();
    assert_close("mlp", &model.apply(&imported, x).unwrap(), y);
    // The same through a closure.
    let import = TorchImport::new().rename_with(|m| Some(if m == "0" { "hidden" } else { "out" }.to_owned()));
    let imported = import.import_safetensors_into(&variables, &read("pytorch/mlp.safetensors")).unwrap();
    assert_close("mlp (closure)", &model.apply(&imported, x).unwrap(), y);
}

#[test]
fn importing_into_a_model_of_another_shape_reports_every_difference() {
    let x = Tensor::zeros([1, 4], (Kind::Float, Device::Cpu));
    let variables = NamedMlp::new(7, 3).init(PRNGKey::new(0), &x).unwrap();
    let err =
        TorchImport::new().import_safetensors_into(&variables, &read("pytorch/mlp.safetensors")).unwrap_err();
    let Error::StateDictMismatch { missing, unexpected, mismatched } = &err else { panic!("{err}") };
    assert_eq!(missing, &["params/hidden", "params/out"]);
    assert_eq!(unexpected, &["params/layers_0", "params/layers_2"]);
    assert!(mismatched.is_empty());

    let variables = SequentialMlp::new(7, 3).init(PRNGKey::new(0), &x).unwrap();
    let err =
        TorchImport::new().import_safetensors_into(&variables, &read("pytorch/mlp.safetensors")).unwrap_err();
    let Error::StateDictMismatch { mismatched, .. } = &err else { panic!("{err}") };
    assert_eq!(mismatched.len(), 3, "{mismatched:?}"); // layers_0 kernel and bias, layers_2 kernel
}

/// A channels-last convolution with a Flax-layout (…IO) kernel, written out as the sum over
/// windows that Flax's `Conv(padding="VALID")` computes: independent of PyTorch's layout.
fn conv_valid(x: &Tensor, kernel: &Tensor) -> Tensor {
    match kernel.size().as_slice() {
        [kh, kw, _, _] => {
            let windows = x.unfold(1, *kh, 1).unfold(2, *kw, 1); // (n, i, j, c, a, b)
            Tensor::einsum("nijcab,abco->nijo", &[windows, kernel.shallow_clone()], None::<i64>)
        }
        [k, _, _] => {
            let windows = x.unfold(1, *k, 1); // (n, l, c, k)
            Tensor::einsum("nlck,kco->nlo", &[windows, kernel.shallow_clone()], None::<i64>)
        }
        other => panic!("kernel shape {other:?}"),
    }
}

/// Flax's normalization of the last axis with given statistics: BatchNorm in inference mode.
fn normalize(x: &Tensor, mean: &Tensor, var: &Tensor, scale: &Tensor, bias: &Tensor) -> Tensor {
    (x - mean) / (var + 1e-5).sqrt() * scale + bias
}

#[test]
fn conv_batchnorm_layernorm_and_embedding_weights_convert_as_the_spec_says() {
    let import = TorchImport::new().layer("emb", TorchLayer::Embedding);
    let vars = import.import_safetensors(&read("pytorch/layers.safetensors")).unwrap();
    let io = vectors("pytorch/layers_io.safetensors");
    let p = |path: &[&str]| get(vars.get_dict("params").unwrap(), path);

    // Conv2d OIHW → HWIO, Conv1d OIW → WIO.
    assert_eq!(p(&["conv", "kernel"]).size(), [2, 3, 3, 4]);
    let conv = conv_valid(get(&io, &["conv_x"]), p(&["conv", "kernel"])) + p(&["conv", "bias"]);
    assert_close("conv2d", &conv, get(&io, &["conv_y"]));
    assert_eq!(p(&["conv1d", "kernel"]).size(), [3, 2, 3]);
    assert!(vars.get_path(&["params", "conv1d", "bias"]).is_none());
    assert_close(
        "conv1d",
        &conv_valid(get(&io, &["conv1d_x"]), p(&["conv1d", "kernel"])),
        get(&io, &["conv1d_y"]),
    );

    // BatchNorm: weight/bias → params scale/bias, running stats → batch_stats, counter dropped.
    let stats = vars.get_path(&["batch_stats", "bn"]).and_then(Value::as_dict).unwrap();
    assert_eq!(stats.keys().collect::<Vec<_>>(), ["mean", "var"]);
    let bn = normalize(
        get(&io, &["bn_x"]),
        get(stats, &["mean"]),
        get(stats, &["var"]),
        p(&["bn", "scale"]),
        p(&["bn", "bias"]),
    );
    assert_close("batchnorm", &bn, get(&io, &["bn_y"]));

    // LayerNorm: the statistics are the input's own (biased variance).
    let x = get(&io, &["ln_x"]);
    let mean = x.mean_dim(-1, true, Kind::Float);
    let var = (x - &mean).square().mean_dim(-1, true, Kind::Float);
    assert_close(
        "layernorm",
        &normalize(x, &mean, &var, p(&["ln", "scale"]), p(&["ln", "bias"])),
        get(&io, &["ln_y"]),
    );

    // Embedding: the table as is.
    let ids = get(&io, &["emb_ids"]);
    let looked_up = p(&["emb", "embedding"]).index_select(0, &ids.flatten(0, -1)).reshape([2, 3, 3]);
    assert_close("embedding", &looked_up, get(&io, &["emb_y"]));
}

#[test]
fn without_the_embedding_hint_its_table_is_taken_for_a_linear_weight() {
    let vars = TorchImport::new().import_safetensors(&read("pytorch/layers.safetensors")).unwrap();
    assert_eq!(vars.tensor(&["params", "emb", "kernel"]).unwrap().size(), [3, 6]);
}

#[test]
fn a_flax_layout_file_restores_and_is_written_byte_for_byte() {
    let file = read("safetensors/flax_params.safetensors");
    let Value::Dict(params) = msgpack_restore(&read("safetensors/flax_params.msgpack")).unwrap() else {
        panic!("not a dict")
    };
    let restored = from_safetensors(&params, &file).unwrap();
    for (module, name) in
        [("Dense_0", "kernel"), ("Dense_0", "bias"), ("Dense_1", "kernel"), ("Dense_1", "bias")]
    {
        let (a, b) = (get(&restored, &[module, name]), get(&params, &[module, name]));
        assert!(a.equal(b), "{module}/{name}");
    }
    assert!(to_safetensors(&restored).unwrap() == file, "bytes differ from safetensors.flax.save_file's");
    let raw = safetensors_restore(&file).unwrap();
    assert_eq!(raw.keys().collect::<Vec<_>>(), ["Dense_0", "Dense_1"]);
    // The same checks as from_bytes: a target of another structure is refused with every reason.
    let (smaller, _) = params.pop("Dense_1").unwrap();
    let err = from_safetensors(&smaller, &file).unwrap_err();
    assert!(
        matches!(&err, Error::StateDictMismatch { unexpected, .. } if unexpected == &["Dense_1"]),
        "{err}"
    );
    assert!(from_bytes(&params, &read("safetensors/flax_params.msgpack")).is_ok());
    // With Flax's own "/" the names do not split on ".".
    let slash = safetensors_restore_with(&file, &SafetensorsOptions::default().separator("/")).unwrap();
    assert!(slash.contains_key("Dense_0.kernel"));
}
