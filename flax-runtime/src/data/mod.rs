//! Data for training loops: the IDX reader of MNIST-format data sets and a seeded,
//! shuffling batch iterator.
//!
//! Flax leaves data loading to other libraries (the spec uses TensorFlow Datasets); these are
//! the pieces its examples need, without Python:
//!
//! ```no_run
//! use flax::data::{load_mnist, Batches, Remainder, Split};
//! use flax::PRNGKey;
//!
//! # fn main() -> flax::Result<()> {
//! let train = load_mnist("/usr/share/datasets/fashion-mnist", Split::Train)?;
//! for epoch in 1..=10u32 {
//!     for batch in Batches::new(&train, 32)?.shuffle(PRNGKey::new(0).fold_in(epoch))? {
//!         let batch = batch?; // batch.data.image: float32[32, 28, 28, 1], batch.data.label: int64[32]
//!     }
//! }
//! let test = load_mnist("/usr/share/datasets/fashion-mnist", Split::Test)?;
//! for batch in Batches::new(&test, 32)?.remainder(Remainder::Pad) {
//!     let batch = batch?; // every test example once; batch.mask marks the real ones
//! }
//! # Ok(())
//! # }
//! ```

mod batches;
mod idx;
mod mnist;

pub use batches::{Batch, Batches, Remainder};
pub use idx::{parse_idx, read_idx};
pub use mnist::{load_mnist, ImageClassification, Split};
