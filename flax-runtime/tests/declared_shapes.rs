//! `#[shape(…)]`: a zoo of real models declared and checked at compile time with no false
//! positive, initialised and applied at run time to show the declared shapes hold; and the
//! run-time guard of declared methods (a typed error naming the module path and the
//! dimension).

use flax::prelude::*;
use flax::tch::IndexOp;
use flax::{sequential, Error};

fn ones(shape: &[i64]) -> Tensor {
    Tensor::ones(shape, (Kind::Float, Device::Cpu))
}

/// The spec's quickstart CNN.
#[module]
pub struct Cnn;

#[module]
impl Cnn {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(32, vec![3, 3]).call(cx, x)?.relu();
        let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
        let x = nn::Conv::new(64, vec![3, 3]).call(cx, &x)?.relu();
        let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(256).call(cx, &x)?.relu();
        nn::Dense::new(10).call(cx, &x)
    }
}

/// The basic-usage MLP, its width a field.
#[module]
pub struct Mlp {
    pub hidden: i64,
    pub out_dims: i64,
}

#[module]
impl Mlp {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, self.out_dims])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(self.hidden).call(cx, &x)?.relu();
        nn::Dense::new(self.out_dims).call(cx, &x)
    }
}

/// A ResNet basic block with a projection shortcut (stride 2, channels doubled).
#[module]
pub struct BasicBlock;

#[module]
impl BasicBlock {
    #[compact]
    #[shape(x: [B, 32, 32, 16] -> [B, 16, 16, 32])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = nn::Conv::new(32, vec![3, 3]).strides(2).use_bias(false).call(cx, x)?;
        let y = nn::BatchNorm::new().call(cx, &y, Some(!train))?.relu();
        let y = nn::Conv::new(32, vec![3, 3]).use_bias(false).call(cx, &y)?;
        let y = nn::BatchNorm::new().call(cx, &y, Some(!train))?;
        let shortcut = nn::Conv::new(32, vec![1, 1]).strides([2, 2]).use_bias(false).call(cx, x)?;
        let shortcut = nn::BatchNorm::new().call(cx, &shortcut, Some(!train))?;
        Ok((y + shortcut).relu())
    }
}

/// A transformer encoder block: self-attention and an MLP, each pre-normed with a residual.
#[module]
pub struct EncoderBlock {
    pub dim: i64,
    pub heads: i64,
    pub mlp_dim: i64,
}

#[module]
impl EncoderBlock {
    #[compact]
    #[shape(x: [B, T, self.dim] -> [B, T, self.dim])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = nn::LayerNorm::new().call(cx, x)?;
        let y = nn::SelfAttention::new(self.heads).call(cx, &y, None, Some(true))?;
        let x = x + y;
        let y = nn::LayerNorm::new().call(cx, &x)?;
        let y = nn::Dense::new(self.mlp_dim).call(cx, &y)?.gelu("none");
        let y = nn::Dropout::new(0.1).call(cx, &y, Some(true))?;
        let y = nn::Dense::new(self.dim).call(cx, &y)?;
        Ok(x + y)
    }
}

/// The VAE example's encoder: the mean and log-variance of the latent code.
#[module]
pub struct VaeEncoder {
    pub latents: i64,
}

#[module]
impl VaeEncoder {
    #[compact]
    #[shape(x: [B, 784])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = nn::Dense::new(500).call(cx, x)?.relu();
        let mean = nn::Dense::new(self.latents).call(cx, &x)?;
        let logvar = nn::Dense::new(self.latents).call(cx, &x)?;
        Ok((mean, logvar))
    }
}

/// The VAE example's decoder.
#[module]
pub struct VaeDecoder {
    pub latents: i64,
}

#[module]
impl VaeDecoder {
    #[compact]
    #[shape(z: [B, self.latents] -> [B, 784])]
    pub fn call(&self, cx: &mut Scope, z: &Tensor) -> Result<Tensor> {
        let z = nn::Dense::new(500).call(cx, z)?.relu();
        nn::Dense::new(784).call(cx, &z)
    }
}

/// The VAE: a declared parent of the declared encoder and decoder (their contracts are
/// checked at the calls by rustc).
#[module]
pub struct Vae {
    pub latents: i64,
}

#[module]
impl Vae {
    #[compact]
    #[shape(x: [B, 784], eps: [B, self.latents] -> [B, 784])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, eps: &Tensor) -> Result<Tensor> {
        let (mean, logvar) = VaeEncoder::new(self.latents).call(cx, x)?;
        let z = mean + eps * (logvar * 0.5).exp();
        let logits = VaeDecoder::new(self.latents).call(cx, &z)?;
        Ok(logits.reshape([-1, 28, 28]).reshape([-1, 784]))
    }
}

/// A U-Net down block: its output, and the skip it hands to the up block.
#[module]
pub struct Down;

#[module]
impl Down {
    #[compact]
    #[shape(x: [B, 16, 16, 32] -> [B, 8, 8, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(64, vec![3, 3]).call(cx, x)?.relu();
        nn::max_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))
    }
}

/// A U-Net up block: upsampled by a transposed convolution, concatenated with the skip.
#[module]
pub struct Up;

#[module]
impl Up {
    #[compact]
    #[shape(x: [B, 8, 8, 64], skip: [B, 16, 16, 32] -> [B, 16, 16, 32])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        let x = nn::ConvTranspose::new(32, vec![2, 2]).strides(2).call(cx, x)?;
        let x = Tensor::cat(&[&x, skip], -1);
        Ok(nn::Conv::new(32, vec![3, 3]).call(cx, &x)?.relu())
    }
}

/// Both, declared, composed: the calls are checked against the blocks' declarations.
#[module]
pub struct UNet;

#[module]
impl UNet {
    #[compact]
    #[shape(x: [B, 16, 16, 32] -> [B, 16, 16, 32])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let down = Down::new().call(cx, x)?;
        Up::new().call(cx, &down, x)
    }
}

/// A U-Net encoder going on from a declared down block: a convolution and a pooling on the
/// block's output, followed by rustc from the block's declaration to the declared output.
#[module]
pub struct DownTwice;

#[module]
impl DownTwice {
    #[compact]
    #[shape(x: [B, 16, 16, 32] -> [B, 3, 3, 16])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = Down::new().call(cx, x)?;
        let h = nn::Conv::new(16, vec![3, 3]).padding(nn::Padding::Valid).call(cx, &h)?.relu();
        let h =
            nn::max_pool_with(&h, [2, 2], nn::PoolOptions::new().strides([2, 2]).padding(nn::Padding::Same))?;
        nn::Conv::new(16, vec![1, 1]).call(cx, &h)
    }
}

#[test]
fn the_zoo_runs_with_its_declared_shapes() {
    let key = PRNGKey::new(0);
    let x = ones(&[3, 28, 28, 1]);
    let cnn = Cnn::new();
    let v = cnn.init(key, &x).unwrap();
    assert_eq!(cnn.apply(&v, &x).unwrap().size(), [3, 10]);

    let mlp = Mlp::new(64, 7);
    let v = mlp.init(key, &x).unwrap();
    assert_eq!(mlp.apply(&v, &x).unwrap().size(), [3, 7]);

    let block = BasicBlock::new();
    let x = ones(&[2, 32, 32, 16]);
    let v = block.init(key, &x, false).unwrap();
    assert_eq!(block.apply(&v, &x, false).unwrap().size(), [2, 16, 16, 32]);

    let encoder = EncoderBlock::new(16, 4, 32);
    let x = ones(&[2, 5, 16]);
    let v = encoder.init(key, &x).unwrap();
    assert_eq!(encoder.apply(&v, &x).unwrap().size(), [2, 5, 16]);

    let unet = UNet::new();
    let x = ones(&[2, 16, 16, 32]);
    let v = unet.init(key, &x).unwrap();
    assert_eq!(unet.apply(&v, &x).unwrap().size(), [2, 16, 16, 32]);
    let down = DownTwice::new();
    let v = down.init(key, &x).unwrap();
    assert_eq!(down.apply(&v, &x).unwrap().size(), [2, 3, 3, 16]);

    let vae = Vae::new(20);
    let (x, eps) = (ones(&[4, 784]), ones(&[4, 20]));
    let v = vae.init(key, &x, &eps).unwrap();
    assert_eq!(vae.apply(&v, &x, &eps).unwrap().size(), [4, 784]);
}

/// The spec's VAE as its `setup` writes it (`self.encoder = Encoder(latents)`,
/// `self.decoder = Decoder()`): submodule fields, whose calls rustc checks against the
/// declarations of the fields' types.
#[module]
pub struct FieldVae {
    #[submodule]
    pub encoder: VaeEncoder,
    #[submodule]
    pub decoder: VaeDecoder,
}

#[module]
impl FieldVae {
    #[shape(x: [B, 784], eps: [B, L] -> [B, 784])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, eps: &Tensor) -> Result<Tensor> {
        let (mean, logvar) = self.encoder.call(cx, x)?;
        let z = mean + eps * (logvar * 0.5).exp();
        self.decoder.call(cx, &z)
    }

    #[shape(z: [B, L] -> [B, 784])]
    pub fn generate(&self, cx: &mut Scope, z: &Tensor) -> Result<Tensor> {
        Ok(self.decoder.call(cx, z)?.sigmoid())
    }
}

/// The transfer-learning guide's `Classifier`: a `backbone` field (declared `[B, 64]` out)
/// and a new head; the head's input comes from the field's contract.
#[module]
pub struct FieldClassifier {
    pub num_classes: i64,
    #[submodule]
    pub backbone: Backbone,
}

#[module]
impl FieldClassifier {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, self.num_classes])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = self.backbone.call(cx, x)?;
        let y = nn::Dense::new(64).call(cx, &h)?.relu();
        let h = h + y;
        nn::Dense::new(self.num_classes).name("head").call(cx, &h)
    }
}

#[test]
fn submodule_fields_run_with_their_declared_shapes() {
    let key = PRNGKey::new(0);
    let vae = FieldVae::new(VaeEncoder::new(20), VaeDecoder::new(20));
    let (x, eps) = (ones(&[4, 784]), ones(&[4, 20]));
    let v = vae.init(key, &x, &eps).unwrap();
    assert_eq!(vae.apply(&v, &x, &eps).unwrap().size(), [4, 784]);
    let (generated, _) =
        vae.apply_method(&v, flax::ApplyOptions::new(), |m, cx| m.generate(cx, &eps)).unwrap();
    assert_eq!(generated.size(), [4, 784]);

    let classifier = FieldClassifier::new(5, Backbone::new());
    let x = ones(&[3, 28, 28, 1]);
    let v = classifier.init(key, &x).unwrap();
    assert_eq!(classifier.apply(&v, &x).unwrap().size(), [3, 5]);
}

/// A declared backbone whose output the parent goes on with: the parent's residual add and
/// head are checked against the backbone's declared `[B, 64]` (by rustc, from its contract).
#[module]
pub struct Backbone;

#[module]
impl Backbone {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(8, vec![3, 3]).strides(2).call(cx, x)?.relu();
        nn::Dense::new(64).call(cx, &x.flatten(1, -1))
    }
}

#[module]
pub struct WithBackbone;

#[module]
impl WithBackbone {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = Backbone::new().call(cx, x)?;
        let y = nn::Dense::new(64).call(cx, &h)?.relu();
        let h = (h + y).unsqueeze(1).mean_dim(&[1i64][..], false, None);
        let h = Tensor::cat(&[&h, &h], -1);
        nn::Dense::new(10).call(cx, &h)
    }
}

/// Multi-head attention written out: `DenseGeneral` projections to heads, `permute`,
/// `matmul` against the `transpose`d keys, softmax, and the heads merged back.
#[module]
pub struct ManualAttention {
    pub heads: i64,
    pub head_dim: i64,
}

#[module]
impl ManualAttention {
    #[compact]
    #[shape(x: [B, T, 64] -> [B, T, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let project = || nn::DenseGeneral::new(vec![self.heads, self.head_dim]);
        let q = project().call(cx, x)?.permute([0, 2, 1, 3]);
        let k = project().call(cx, x)?.permute([0, 2, 1, 3]);
        let v = project().call(cx, x)?.permute([0, 2, 1, 3]);
        let weights = q.matmul(&k.transpose(-2, -1)).softmax(-1, Kind::Float);
        let y = weights.matmul(&v).permute([0, 2, 1, 3]);
        let y = nn::DenseGeneral::new(64).axis(vec![-2, -1]).call(cx, &y)?;
        Ok(x + y)
    }
}

/// The spec's `nn.RNN(nn.LSTMCell(), cell_size=64)` as an encoder: its final `h`.
#[module]
pub struct LstmEncoder {
    pub hidden: i64,
}

#[module]
impl LstmEncoder {
    #[compact]
    #[shape(x: [B, T, 32] -> [B, self.hidden])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let rnn = nn::RNN::new(nn::LSTMCell::new(), self.hidden);
        let ((_, h), outputs) = rnn.call(cx, x, None, None)?;
        let last = outputs.select(1, -1);
        Ok(h + last)
    }
}

/// A seq2seq decoder step: an LSTM cell on the previous token, logits over the vocabulary.
#[module]
pub struct DecoderStep {
    pub hidden: i64,
    pub vocab: i64,
}

#[module]
impl DecoderStep {
    #[compact]
    #[shape(token: [B, self.vocab], c: [B, self.hidden], h: [B, self.hidden] -> [B, self.vocab])]
    pub fn call(&self, cx: &mut Scope, token: &Tensor, c: &Tensor, h: &Tensor) -> Result<Tensor> {
        let carry = (c.shallow_clone(), h.shallow_clone());
        let ((_, h), y) = nn::LSTMCell::new().call(cx, &carry, token)?;
        let logits = nn::Dense::new(self.vocab).call(cx, &(y + h))?;
        Ok(logits.log_softmax(-1, Kind::Float))
    }
}

/// A GRU over a sequence, then `Sequential` and `ConvLocal` heads, slicing and reductions.
#[module]
pub struct Grab;

#[module]
impl Grab {
    #[compact]
    #[shape(x: [B, 10, 16] -> [B, 4])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let b = x.size()[0];
        let carry =
            nn::GRUCell::initialize_carry(PRNGKey::new(0), &[b], 8, &nn::initializers::zeros(), Device::Cpu)?;
        let (h, y) = nn::GRUCell::new().call(cx, &carry, &x.select(1, 0))?;
        let seq = nn::RNN::new(nn::GRUCell::new(), 8).call(cx, &x.narrow(1, 1, 9), Some(&h), None)?.1;
        let seq = seq.slice(1, 0, None, 3).i((.., 1..3)) + y.unsqueeze(1);
        let image = seq.reshape([-1, 2, 4, 2]);
        let image = nn::ConvLocal::new(2, vec![2, 2]).padding(nn::Padding::Valid).call(cx, &image)?;
        let pooled = image.amax(&[1i64, 2][..], false).sum_dim_intlist(&[-1i64][..], true, None);
        let mlp = sequential![nn::Dense::new(16), nn::relu, nn::Dense::new(4)];
        Ok(mlp.call(cx, &pooled)? + seq.mean_dim(&[1i64, 2][..], false, None).unsqueeze(-1))
    }
}

/// A tied-embedding language model head: `Embed` then `Embed::attend`.
#[module]
pub struct TiedLm;

#[module]
impl TiedLm {
    #[compact]
    #[shape(ids: [B, T] -> [B, T, 100])]
    pub fn call(&self, cx: &mut Scope, ids: &Tensor) -> Result<Tensor> {
        let embed = nn::Embed::new(100, 32);
        let x = embed.call(cx, ids)?;
        let x = nn::LayerNorm::new().call(cx, &x)?;
        embed.attend(cx, &x)
    }
}

#[test]
fn the_second_zoo_runs_with_its_declared_shapes() {
    let key = PRNGKey::new(0);
    let x = ones(&[3, 28, 28, 1]);
    let m = WithBackbone::new();
    let v = m.init(key, &x).unwrap();
    assert_eq!(m.apply(&v, &x).unwrap().size(), [3, 10]);

    let m = ManualAttention::new(4, 16);
    let x = ones(&[2, 5, 64]);
    let v = m.init(key, &x).unwrap();
    assert_eq!(m.apply(&v, &x).unwrap().size(), [2, 5, 64]);

    let m = LstmEncoder::new(24);
    let x = ones(&[2, 7, 32]);
    let v = m.init(key, &x).unwrap();
    assert_eq!(m.apply(&v, &x).unwrap().size(), [2, 24]);

    let m = DecoderStep::new(12, 20);
    let (token, c) = (ones(&[3, 20]), ones(&[3, 12]));
    let v = m.init(key, &token, &c, &c).unwrap();
    assert_eq!(m.apply(&v, &token, &c, &c).unwrap().size(), [3, 20]);

    let m = Grab::new();
    let x = ones(&[2, 10, 16]);
    let v = m.init(key, &x).unwrap();
    assert_eq!(m.apply(&v, &x).unwrap().size(), [2, 4]);

    let m = TiedLm::new();
    let ids = Tensor::zeros([2, 6], (Kind::Int64, Device::Cpu));
    let v = m.init(key, &ids).unwrap();
    assert_eq!(m.apply(&v, &ids).unwrap().size(), [2, 6, 100]);
}

fn declared_shape_error<T: std::fmt::Debug>(result: Result<T>) -> (String, String, Option<usize>, String) {
    match result {
        Err(Error::DeclaredShape { scope, argument, axis, message }) => (scope, argument, axis, message),
        other => panic!("expected Error::DeclaredShape, got {other:?}"),
    }
}

#[test]
fn the_guard_names_the_argument_and_dimension() {
    let cnn = Cnn::new();
    let (scope, argument, axis, message) =
        declared_shape_error(cnn.init(PRNGKey::new(0), &ones(&[2, 28, 28, 3])));
    assert_eq!((scope.as_str(), argument.as_str(), axis), ("/", "x", Some(3)));
    assert_eq!(
        message,
        "x of Cnn.call has shape [2, 28, 28, 3], but #[shape(x: [B, 28, 28, 1] -> [B, 10])] declares \
         [B, 28, 28, 1]: dimension 3 is 3, not 1"
    );
    let (_, _, axis, message) = declared_shape_error(cnn.init(PRNGKey::new(0), &ones(&[28, 28, 1])));
    assert_eq!(axis, None);
    assert!(message.ends_with("rank 3, declared rank 4"), "{message}");
    // Fields are read from the module value.
    let (_, _, axis, message) =
        declared_shape_error(VaeDecoder::new(8).init(PRNGKey::new(0), &ones(&[2, 9])));
    assert_eq!(axis, Some(1));
    assert!(message.ends_with("dimension 1 is 9, not self.latents = 8"), "{message}");
}

#[test]
fn symbols_are_shared_across_the_declaration() {
    let (_, argument, axis, message) =
        declared_shape_error(Vae::new(20).init(PRNGKey::new(0), &ones(&[4, 784]), &ones(&[5, 20])));
    assert_eq!((argument.as_str(), axis), ("eps", Some(0)));
    assert!(message.ends_with("dimension 0 is 5, but B is 4 (from x)"), "{message}");
}

/// An undeclared parent of a declared module.
#[module]
pub struct Wrapper;

#[module]
impl Wrapper {
    #[compact]
    pub fn call(&self, cx: &mut Scope, z: &Tensor) -> Result<Tensor> {
        VaeDecoder::new(8).call(cx, z)
    }
}

#[test]
fn a_declared_child_is_guarded_at_its_own_path() {
    let (scope, argument, axis, _) =
        declared_shape_error(Wrapper::new().init(PRNGKey::new(0), &ones(&[2, 9])));
    assert_eq!((scope.as_str(), argument.as_str(), axis), ("/VaeDecoder_0", "z", Some(1)));
}

/// A declared module whose body the checker cannot follow: the output is still guarded.
#[module]
pub struct Opaque;

#[module]
impl Opaque {
    #[compact]
    #[shape(x: [B, 4] -> [B, 4])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let _ = cx;
        Ok(if x.size()[0] > 1 { x.narrow(1, 0, 2) } else { x.shallow_clone() })
    }
}

#[test]
fn the_output_is_guarded_too() {
    let (_, argument, axis, message) =
        declared_shape_error(Opaque::new().init(PRNGKey::new(0), &ones(&[2, 4])));
    assert_eq!((argument.as_str(), axis), ("output", Some(1)));
    assert!(message.ends_with("dimension 1 is 2, not 4"), "{message}");
    assert!(Opaque::new().init(PRNGKey::new(0), &ones(&[1, 4])).is_ok());
}

/// A declared block, held by the containers below.
#[module]
pub struct Block;

#[module]
impl Block {
    #[compact]
    #[shape(x: [B, 16] -> [B, 16])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(16).call(cx, x)
    }
}

/// A `Vec` submodule field: its elements' calls are checked by rustc against the element
/// type's declaration (`layers[]` in `__FLAX_FIELDS`), and their declared output flows on.
#[module]
pub struct Stack {
    #[submodule]
    pub layers: Vec<Block>,
}

#[module]
impl Stack {
    #[compact]
    #[shape(x: [B, 16] -> [B, 16])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = self.layers[0].call(cx, x)?;
        let y = self.layers[1].call(cx, &(y + x))?;
        let mut h = y.shallow_clone();
        for layer in &self.layers {
            h = layer.call(cx, &h)?;
        }
        Ok(h + y)
    }
}

/// What a generic module's field runs through (`M: Module` alone has no `call`).
pub trait Forward: Module {
    fn forward(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor>;
}

impl Forward for Block {
    fn forward(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.call(cx, x)
    }
}

/// A generic declared module: its field's type is a parameter, whose contract the macro
/// cannot name, so the field's call is unknown (no error); the body's own guard and the
/// field's (if its type is declared) still run.
#[module]
pub struct Residual<M: Forward> {
    #[submodule]
    pub body: M,
}

#[module]
impl<M: Forward> Residual<M> {
    #[compact]
    #[shape(x: [B, D] -> [B, D])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(self.body.forward(cx, x)? + x)
    }
}

#[test]
fn vec_and_generic_submodule_fields_run_with_their_declared_shapes() {
    let key = PRNGKey::new(0);
    let x = ones(&[3, 16]);
    let stack = Stack::new(vec![Block::new(), Block::new()]);
    let v = stack.init(key, &x).unwrap();
    assert_eq!(stack.apply(&v, &x).unwrap().size(), [3, 16]);

    let residual = Residual::new(Block::new());
    let v = residual.init(key, &x).unwrap();
    assert_eq!(residual.apply(&v, &x).unwrap().size(), [3, 16]);
    // `D` may be any size for `Residual`, but its body is a `Block`, whose guard holds `16`.
    let (scope, argument, axis, _) = declared_shape_error(residual.init(key, &ones(&[3, 8])));
    assert_eq!((scope.as_str(), argument.as_str(), axis), ("/body", "x", Some(1)));
}

/// One row of a `tabulate` table: path, module, and the lines of its inputs and outputs.
struct Tabulated {
    path: String,
    module: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// The rows of a table `tabulate` rendered wide enough that no cell wraps.
fn tabulated_rows(table: &str) -> Vec<Tabulated> {
    let mut rows = Vec::new();
    let mut block: Vec<Vec<String>> = Vec::new();
    for line in table.lines() {
        if line.starts_with('│') {
            let cells = line.split('│').map(|c| c.trim().to_owned());
            block.push(cells.skip(1).take(4).collect());
        } else if line.starts_with('├') || line.starts_with('└') {
            let column = |j: usize| -> Vec<String> {
                block.iter().map(|cells| cells[j].clone()).filter(|c| !c.is_empty()).collect()
            };
            if !block.is_empty() {
                rows.push(Tabulated {
                    path: column(0).concat(),
                    module: column(1).concat(),
                    inputs: column(2),
                    outputs: column(3),
                });
            }
            block.clear();
        }
    }
    rows
}

/// The sizes of a compile-time shape cell (`[B, 784*B, self.dim, _]`) with the symbols and
/// fields given `values` (`None` for `_`), or `None` when the cell is not a shape.
fn compile_time_sizes(cell: &str, values: &[(&str, i64)]) -> Option<Vec<Option<i64>>> {
    let dims = cell.strip_prefix('[')?.strip_suffix(']')?;
    let size = |dim: &str| -> Option<i64> {
        (dim != "_").then(|| {
            dim.split('*')
                .map(|factor| {
                    factor.parse::<i64>().unwrap_or_else(|_| {
                        values
                            .iter()
                            .find(|(name, _)| *name == factor)
                            .unwrap_or_else(|| panic!("no value for {factor}"))
                            .1
                    })
                })
                .product()
        })
    };
    Some(if dims.is_empty() { Vec::new() } else { dims.split(", ").map(size).collect() })
}

/// The sizes of a `tabulate` tensor (`float32[3,28,28,1]`), or `None` for another value.
fn tabulated_sizes(text: &str) -> Option<Vec<i64>> {
    let dims = text.split_once('[')?.1.strip_suffix(']')?;
    Some(if dims.is_empty() { Vec::new() } else { dims.split(',').map(|d| d.parse().unwrap()).collect() })
}

/// A `tabulate` inputs cell as one text per argument (several are a YAML list).
fn tabulated_arguments(lines: &[String]) -> Vec<String> {
    match lines {
        [single] if !single.starts_with("- ") => vec![single.clone()],
        _ => {
            let mut args: Vec<String> = Vec::new();
            for line in lines {
                match line.strip_prefix("- ") {
                    Some(start) => args.push(start.to_owned()),
                    None => args.last_mut().expect("a list item first").push_str(line),
                }
            }
            args
        }
    }
}

/// Holds the compile-time table of `method` (`__FLAX_SHAPE_TABLE`) against the `tabulate`
/// table of the same call, with the declaration's symbols and fields at `values`: every row
/// the macro names is a row of `tabulate` with the same module, and its known shapes are the
/// shapes `tabulate` shows. When `complete`, every submodule `tabulate` shows directly under
/// the module has its row. Returns how many shapes were compared.
fn agrees_with_tabulate(
    rows: &[flax::__private::shape::TableRow],
    method: &str,
    table: &str,
    values: &[(&str, i64)],
    complete: bool,
) -> usize {
    let tabulated = tabulated_rows(table);
    let rows: Vec<_> = rows.iter().filter(|r| r.method == method).collect();
    let mut compared = 0;
    let mut agree = |cell: &str, text: &str, what: &str| {
        if let (Some(want), Some(got)) = (compile_time_sizes(cell, values), tabulated_sizes(text)) {
            assert_eq!(want.len(), got.len(), "{what}: {cell} against {text}");
            for (w, g) in want.iter().zip(&got) {
                assert!(w.is_none_or(|w| w == *g), "{what}: {cell} against {text}");
            }
            compared += 1;
        }
    };
    for row in &rows {
        let Some(path) = row.path else { continue };
        let t =
            tabulated.iter().find(|t| t.path == path).unwrap_or_else(|| panic!("no row {path} in\n{table}"));
        if let Some(module) = row.module {
            assert_eq!(module, t.module, "{path}");
        }
        let arguments = tabulated_arguments(&t.inputs);
        assert_eq!(row.inputs.len(), arguments.len(), "{path}: {:?} against {arguments:?}", row.inputs);
        for (cell, text) in row.inputs.iter().zip(&arguments) {
            agree(cell, text, path);
        }
        if let [output] = t.outputs.as_slice() {
            agree(row.output, output, path);
        }
    }
    if complete {
        for t in
            tabulated.iter().filter(|t| !t.path.is_empty() && !t.path.contains('/') && !t.module.is_empty())
        {
            assert!(
                rows.iter().any(|r| r.path == Some(t.path.as_str())),
                "{} has no compile-time row",
                t.path
            );
        }
    }
    compared
}

fn wide() -> flax::summary::TabulateOptions {
    flax::summary::TabulateOptions::new().console_width(1000)
}

/// The rustdoc table of the zoo's declared modules (their `__FLAX_SHAPE_TABLE`) agrees with
/// `tabulate` at run time, with concrete sizes for the symbols and fields.
#[test]
fn the_compile_time_table_agrees_with_tabulate() {
    let key = PRNGKey::new(0);
    let paths = |rows: &[flax::__private::shape::TableRow]| rows.iter().map(|r| r.path).collect::<Vec<_>>();
    assert_eq!(
        paths(Cnn::__FLAX_SHAPE_TABLE),
        [Some("Conv_0"), Some("Conv_1"), Some("Dense_0"), Some("Dense_1")]
    );
    let x = ones(&[3, 28, 28, 1]);
    let table = Cnn::new().tabulate_with(key, &wide(), &x).unwrap();
    assert_eq!(agrees_with_tabulate(Cnn::__FLAX_SHAPE_TABLE, "call", &table, &[("B", 3)], true), 8);
    let table = Mlp::new(64, 7).tabulate_with(key, &wide(), &x).unwrap();
    let values = [("B", 3), ("self.hidden", 64), ("self.out_dims", 7)];
    assert_eq!(agrees_with_tabulate(Mlp::__FLAX_SHAPE_TABLE, "call", &table, &values, true), 4);

    let x = ones(&[2, 32, 32, 16]);
    let table = BasicBlock::new().tabulate_with(key, &wide(), &x, false).unwrap();
    assert_eq!(agrees_with_tabulate(BasicBlock::__FLAX_SHAPE_TABLE, "call", &table, &[("B", 2)], true), 12);

    let x = ones(&[2, 5, 16]);
    let table = EncoderBlock::new(16, 4, 32).tabulate_with(key, &wide(), &x).unwrap();
    let values = [("B", 2), ("T", 5), ("self.dim", 16), ("self.heads", 4), ("self.mlp_dim", 32)];
    assert_eq!(agrees_with_tabulate(EncoderBlock::__FLAX_SHAPE_TABLE, "call", &table, &values, true), 12);

    let (x, eps) = (ones(&[4, 784]), ones(&[4, 20]));
    let table = Vae::new(20).tabulate_with(key, &wide(), &x, &eps).unwrap();
    let values = [("B", 4), ("self.latents", 20)];
    assert!(agrees_with_tabulate(Vae::__FLAX_SHAPE_TABLE, "call", &table, &values, true) >= 1);

    let x = ones(&[2, 16, 16, 32]);
    let table = UNet::new().tabulate_with(key, &wide(), &x).unwrap();
    assert!(agrees_with_tabulate(UNet::__FLAX_SHAPE_TABLE, "call", &table, &[("B", 2)], true) >= 1);
    let table = Up::new().tabulate_with(key, &wide(), &ones(&[2, 8, 8, 64]), &x).unwrap();
    assert_eq!(agrees_with_tabulate(Up::__FLAX_SHAPE_TABLE, "call", &table, &[("B", 2)], true), 4);
    let table = DownTwice::new().tabulate_with(key, &wide(), &x).unwrap();
    assert!(agrees_with_tabulate(DownTwice::__FLAX_SHAPE_TABLE, "call", &table, &[("B", 2)], true) >= 1);
}

/// The same for the second zoo: fields and explicit names, `Embed::attend`, recurrent cells
/// and their carries, and bodies where some paths are not certain (a closure's
/// constructions, a `Sequential`'s layers, an `RNN`'s cell).
#[test]
fn the_second_zoos_table_agrees_with_tabulate() {
    let key = PRNGKey::new(0);
    let paths = |rows: &[flax::__private::shape::TableRow]| rows.iter().map(|r| r.path).collect::<Vec<_>>();
    let x = ones(&[3, 28, 28, 1]);
    let m = FieldClassifier::new(5, Backbone::new());
    assert_eq!(paths(FieldClassifier::__FLAX_SHAPE_TABLE), [Some("backbone"), Some("Dense_0"), Some("head")]);
    let table = m.tabulate_with(key, &wide(), &x).unwrap();
    let values = [("B", 3), ("self.num_classes", 5)];
    assert_eq!(agrees_with_tabulate(FieldClassifier::__FLAX_SHAPE_TABLE, "call", &table, &values, true), 1);

    let ids = Tensor::zeros([2, 6], (Kind::Int64, Device::Cpu));
    let table = TiedLm::new().tabulate_with(key, &wide(), &ids).unwrap();
    assert_eq!(
        agrees_with_tabulate(TiedLm::__FLAX_SHAPE_TABLE, "call", &table, &[("B", 2), ("T", 6)], true),
        4
    );

    let m = DecoderStep::new(12, 20);
    let (token, c) = (ones(&[3, 20]), ones(&[3, 12]));
    let table = m.tabulate_with(key, &wide(), &token, &c, &c).unwrap();
    let values = [("B", 3), ("self.hidden", 12), ("self.vocab", 20)];
    assert!(agrees_with_tabulate(DecoderStep::__FLAX_SHAPE_TABLE, "call", &table, &values, true) >= 2);

    let table = Grab::new().tabulate_with(key, &wide(), &ones(&[2, 10, 16])).unwrap();
    agrees_with_tabulate(Grab::__FLAX_SHAPE_TABLE, "call", &table, &[("B", 2)], false);
    let table = LstmEncoder::new(24).tabulate_with(key, &wide(), &ones(&[2, 7, 32])).unwrap();
    agrees_with_tabulate(LstmEncoder::__FLAX_SHAPE_TABLE, "call", &table, &[("B", 2), ("T", 7)], false);
    let table = ManualAttention::new(4, 16).tabulate_with(key, &wide(), &ones(&[2, 5, 64])).unwrap();
    let values = [("B", 2), ("T", 5), ("self.heads", 4), ("self.head_dim", 16)];
    agrees_with_tabulate(ManualAttention::__FLAX_SHAPE_TABLE, "call", &table, &values, false);
}
