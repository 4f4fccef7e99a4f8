//! Scaled-dot-product attention (being split into its parts; for now all in `tiled`).

mod tiled;

pub use tiled::{AttentionMask, attention, attention_into, attention_into_on, attention_reference};
