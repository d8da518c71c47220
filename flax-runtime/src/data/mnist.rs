//! MNIST-format image classification data sets (MNIST, Fashion-MNIST, KMNIST, …): a
//! directory of four IDX files, as the data sets are distributed.

use crate::core::errors::{Error, Result};
use crate::core::scalar_ops::ScalarOps;
use crate::data::idx::read_idx;
use crate::tree::Tree;
use std::path::{Path, PathBuf};
use tch::Kind;
use tch::Tensor;

/// Which half of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`.
    Train,
    /// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`.
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Images and their class labels, as the spec's quickstart prepares MNIST: `image` is
/// `float32[N, H, W, 1]` scaled to `[0, 1]` (channels last), `label` is `int64[N]`.
///
/// A [`Tree`], so [`Batches`](crate::data::Batches) iterates over it and
/// [`tree::to_device`](crate::tree::to_device) moves it.
#[derive(Debug, Tree)]
pub struct ImageClassification {
    /// The images, `float32[N, H, W, 1]` in `[0, 1]`.
    pub image: Tensor,
    /// The labels, `int64[N]`.
    pub label: Tensor,
}

impl ImageClassification {
    /// The number of examples.
    pub fn len(&self) -> i64 {
        self.label.size().first().copied().unwrap_or(0)
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` examples (all of them if there are fewer), sharing this data's storage.
    ///
    /// # Errors
    /// libtorch's.
    pub fn take(&self, n: i64) -> Result<Self> {
        let n = n.clamp(0, self.len());
        Ok(ImageClassification { image: self.image.f_narrow(0, 0, n)?, label: self.label.f_narrow(0, 0, n)? })
    }
}

/// Loads one split of an MNIST-format data set from `dir`, which holds
/// `{train,t10k}-images-idx3-ubyte` and `{train,t10k}-labels-idx1-ubyte`, each gzipped
/// (`.gz`) or not. Debian's `dataset-fashion-mnist` installs Fashion-MNIST in
/// `/usr/share/datasets/fashion-mnist`.
///
/// # Errors
/// [`Error::Io`] when a file is missing or unreadable (naming the file looked for);
/// [`Error::Format`] when a file is malformed, the images are not `uint8[N, H, W]`, the
/// labels not `uint8[N]`, or their counts differ.
pub fn load_mnist(dir: impl AsRef<Path>, split: Split) -> Result<ImageClassification> {
    let dir = dir.as_ref();
    let images = read_idx(find(dir, split, "images-idx3-ubyte")?)?;
    let labels = read_idx(find(dir, split, "labels-idx1-ubyte")?)?;
    if images.f_kind()? != Kind::Uint8 || images.dim() != 3 {
        return Err(malformed(format!("images must be uint8[N, H, W], found {}", describe(&images))));
    }
    if labels.f_kind()? != Kind::Uint8 || labels.dim() != 1 {
        return Err(malformed(format!("labels must be uint8[N], found {}", describe(&labels))));
    }
    if images.size()[0] != labels.size()[0] {
        return Err(malformed(format!(
            "{} images but {} labels in {}",
            images.size()[0],
            labels.size()[0],
            dir.display()
        )));
    }
    let image = images.f_unsqueeze(-1)?.f_to_kind(Kind::Float)?.try_div_scalar(255.0)?;
    Ok(ImageClassification { image, label: labels.f_to_kind(Kind::Int64)? })
}

/// The path of `{prefix}-{name}` in `dir`, gzipped or not.
fn find(dir: &Path, split: Split, name: &str) -> Result<PathBuf> {
    let plain = dir.join(format!("{}-{name}", split.prefix()));
    let gzipped = plain.with_file_name(format!("{}-{name}.gz", split.prefix()));
    if plain.is_file() {
        return Ok(plain);
    }
    if gzipped.is_file() {
        return Ok(gzipped);
    }
    let message =
        format!("no {} or {} (an MNIST-format data set directory)", plain.display(), gzipped.display());
    Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, message)))
}

fn describe(t: &Tensor) -> String {
    format!("{:?}{:?}", t.kind(), t.size())
}

fn malformed(message: String) -> Error {
    Error::Format { format: "MNIST", message }
}
