//! Optax's gradient transformations, one per file, each with its state type.

mod add_decayed_weights;
mod chain;
mod clip;
mod clip_by_global_norm;
mod identity;
mod leaf_groups;
mod masked;
mod multi_transform;
mod scale;
mod scale_by_adam;
mod scale_by_rms;
mod scale_by_rss;
mod scale_by_trust_ratio;
mod set_to_zero;
mod trace;

pub use add_decayed_weights::{add_decayed_weights, AddDecayedWeights, WeightDecaySchedule};
pub use chain::{chain, Chain};
pub use clip::{clip, Clip};
pub use clip_by_global_norm::{clip_by_global_norm, ClipByGlobalNorm};
pub use identity::{identity, Identity, MaybeState};
pub use masked::{masked, masked_tree, Mask, Masked, MaskedState};
pub use multi_transform::{multi_transform, MultiTransform, MultiTransformState};
pub use scale::{scale, scale_by_learning_rate, scale_by_schedule, Scale, ScaleByScheduleState};
pub use scale_by_adam::{scale_by_adam, ScaleByAdam, ScaleByAdamState};
pub use scale_by_rms::{scale_by_rms, scale_by_stddev, ScaleByRms, ScaleByRmsState};
pub use scale_by_rss::{scale_by_rss, ScaleByRss, ScaleByRssState};
pub use scale_by_trust_ratio::{scale_by_trust_ratio, ScaleByTrustRatio};
pub use set_to_zero::{set_to_zero, SetToZero};
pub use trace::{trace, Trace, TraceState};
