//! GPT-2, as transformers/models/gpt2/modeling_gpt2.py: learned token and position embeddings,
//! pre-LayerNorm blocks of causal self-attention and an MLP, a final LayerNorm, and an LM head
//! tied to the token embeddings. Every linear layer is a `Conv1D` (weights stored `[in, out]`).
//!
//! Decoding reuses keys and values through a [`KvCache`] allocated once per generation.

use std::path::Path;
use std::sync::OnceLock;

use ndarray::{Array2, Array3, Array4, ArrayView2, ArrayView3, ArrayViewMut2, Axis, s};
use oxformer_nn::{Embedding, LayerNorm, Linear, Tensor, Weights};
use oxformer_tensor::{Activation, ArgmaxScreen, AttentionMask, attention_into};

use crate::config::{Gpt2Config, HiddenAct, ModelConfig};
use crate::error::{Error, Result};
use crate::generation::{Generative, NextStep, Prompts};
use crate::workspace::{SharedWorkspace, Workspace, matrix, run_block};

/// The kernel activation of a config activation.
fn activation_of(act: HiddenAct) -> Activation {
    match act {
        HiddenAct::Gelu => Activation::Gelu,
        HiddenAct::GeluTanh => Activation::GeluTanh,
        HiddenAct::Relu => Activation::Relu,
        HiddenAct::Silu => Activation::Silu,
        HiddenAct::Tanh => Activation::Tanh,
        HiddenAct::Linear => Activation::Identity,
    }
}

/// An input the model cannot take (ids out of range, too many positions, a full cache, ...): the
/// caller's error.
fn input_error(layer: &str, reason: String) -> Error {
    Error::Input {
        model: format!("gpt2 {layer}"),
        reason,
    }
}

/// A block's forward on its own: `work` runs on the (batch × seq, embed) rows in place, as the
/// first `seq` positions of a sequence (no cache before them), with a cache of its own.
fn run_gpt2_block(
    block: &str,
    hidden: ArrayView3<'_, f32>,
    attention_mask: Option<ArrayView2<'_, f32>>,
    (num_heads, head_dim): (usize, usize),
    work: impl FnOnce(
        ArrayViewMut2<'_, f32>,
        &Step<'_>,
        (&mut Array4<f32>, &mut Array4<f32>),
        &mut Workspace,
    ) -> Result<()>,
) -> Result<Array3<f32>> {
    let (batch, seq, _) = hidden.dim();
    if batch == 0 || seq == 0 {
        return Err(Error::Input {
            model: block.to_string(),
            reason: format!("no positions: hidden states of (batch, seq) = ({batch}, {seq})"),
        });
    }
    run_block(block, hidden, attention_mask, |rows, _, mask, workspace| {
        let ones;
        let key_padding = match mask.key_padding {
            Some(padding) => padding,
            None => {
                ones = Array2::<f32>::ones((batch, seq));
                ones.view()
            }
        };
        let step = Step {
            batch,
            key_padding,
            past: 0,
        };
        let mut keys = Array4::<f32>::zeros((batch, num_heads, seq, head_dim));
        let mut values = Array4::<f32>::zeros((batch, num_heads, seq, head_dim));
        work(rows, &step, (&mut keys, &mut values), workspace)
    })
}

/// Keys and values of every layer for a batch of sequences, allocated once for up to
/// `capacity` positions (transformers' `DynamicCache`, preallocated).
///
/// The model appends to it on each [`Gpt2Model::forward`]; beam search reorders its rows
/// with [`KvCache::reorder_rows`].
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Per layer: (batch, heads, capacity, head_dim).
    keys: Vec<Array4<f32>>,
    /// Per layer: (batch, heads, capacity, head_dim).
    values: Vec<Array4<f32>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `batch` sequences of up to `capacity` positions each.
    pub fn new(config: &Gpt2Config, batch: usize, capacity: usize) -> Self {
        let shape = (batch, config.n_head, capacity, config.head_dim());
        Self {
            keys: (0..config.n_layer).map(|_| Array4::zeros(shape)).collect(),
            values: (0..config.n_layer).map(|_| Array4::zeros(shape)).collect(),
            len: 0,
        }
    }

    /// Number of positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of positions it can hold.
    pub fn capacity(&self) -> usize {
        self.keys.first().map_or(0, |keys| keys.dim().2)
    }

    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.keys.first().map_or(0, |keys| keys.dim().0)
    }

    /// Forgets every stored position (the memory is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Row `i` becomes the old row `rows[i]`, as transformers' `Cache.reorder_cache(beam_idx)`.
    ///
    /// # Errors
    /// When `rows` has another length than the batch or names a row that does not exist.
    pub fn reorder_rows(&mut self, rows: &[usize]) -> Result<()> {
        let batch = self.batch_size();
        if rows.len() != batch || rows.iter().any(|&row| row >= batch) {
            return Err(input_error(
                "KvCache",
                format!("cannot reorder {batch} rows by {rows:?}"),
            ));
        }
        if rows
            .iter()
            .enumerate()
            .all(|(target, &source)| target == source)
        {
            return Ok(());
        }
        let len = self.len;
        for buffer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            let old = buffer.slice(s![.., .., ..len, ..]).to_owned();
            for (target, &source) in rows.iter().enumerate() {
                buffer
                    .slice_mut(s![target, .., ..len, ..])
                    .assign(&old.index_axis(Axis(0), source));
            }
        }
        Ok(())
    }
}

/// Where a forward pass's new positions sit: `batch` rows, each after `past` cached positions,
/// with `key_padding` (batch, past + seq) over all of them.
#[derive(Clone, Copy)]
struct Step<'a> {
    batch: usize,
    key_padding: ArrayView2<'a, f32>,
    past: usize,
}

/// modeling_gpt2.py `GPT2Attention` (self-attention only): causal multi-head attention over a
/// fused query/key/value `Conv1D`, then the `c_proj` output projection.
#[derive(Debug, Clone)]
pub struct Gpt2Attention {
    c_attn: Linear,
    c_proj: Linear,
    num_heads: usize,
    head_dim: usize,
    scale: f32,
}

impl Gpt2Attention {
    /// Loads `c_attn` and `c_proj` (`Conv1D`s: weights stored `[in, out]`).
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full dotted path.
    pub fn load(weights: &Weights, config: &Gpt2Config) -> Result<Self> {
        let embed = config.n_embd;
        let head_dim = config.head_dim();
        // transformers' default attention (sdpa, what `from_pretrained` picks) scales by
        // 1/√head_dim whatever `scale_attn_weights` and `scale_attn_by_inverse_layer_idx` say:
        // those two, like `reorder_and_upcast_attn` (f32 already), act only in the eager path.
        let scale = 1.0 / (head_dim as f32).sqrt();
        Ok(Self {
            c_attn: Linear::from_conv1d(&weights.sub("c_attn"), embed, 3 * embed)?,
            c_proj: Linear::from_conv1d(&weights.sub("c_proj"), embed, embed)?,
            num_heads: config.n_head,
            head_dim,
            scale,
        })
    }

    /// `c_proj(attention(hidden))`: each position attends to itself and the positions before
    /// it whose `attention_mask` is 1 (no residual: [`Gpt2Block`] adds it).
    ///
    /// # Shapes
    /// `hidden`: (batch, seq, n_embd); `attention_mask`: (batch, seq), 1 for real tokens and 0
    /// for padding, `None` for all real; result: (batch, seq, n_embd).
    ///
    /// # Errors
    /// [`Error::Input`] for an empty batch or sequence, or a mask of another shape; a width
    /// other than `n_embd`.
    pub fn forward(
        &self,
        hidden: ArrayView3<'_, f32>,
        attention_mask: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array3<f32>> {
        run_gpt2_block(
            "Gpt2Attention",
            hidden,
            attention_mask,
            (self.num_heads, self.head_dim),
            |mut rows, step, cache, workspace| {
                let mut out = Array2::<f32>::zeros(rows.dim());
                self.forward_into(
                    rows.view(),
                    None,
                    step,
                    cache,
                    (&mut workspace.qkv, &mut workspace.context),
                    out.view_mut(),
                )?;
                rows.assign(&out);
                Ok(())
            },
        )
    }

    /// Causal self-attention of `seq` new positions per row, after the `cache`'s `past` ones;
    /// writes the new keys and values into the cache, and `c_proj(attention) + residual` into
    /// `out`. The fused query/key/value product and the attention's output go to `buffers`.
    ///
    /// # Shapes
    /// `x`, `residual`, `out`: (batch × seq, embed).
    fn forward_into(
        &self,
        x: ArrayView2<'_, f32>,
        residual: Option<ArrayView2<'_, f32>>,
        step: &Step<'_>,
        cache: (&mut Array4<f32>, &mut Array4<f32>),
        (qkv_buffer, context_buffer): (&mut Vec<f32>, &mut Vec<f32>),
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let Step {
            batch,
            key_padding,
            past,
        } = *step;
        let (heads, head_dim) = (self.num_heads, self.head_dim);
        let embed = heads * head_dim;
        if x.ncols() != embed {
            return Err(input_error(
                "attn",
                format!(
                    "hidden states of width {}, expected n_embd = {embed}",
                    x.ncols()
                ),
            ));
        }
        let rows = x.nrows();
        let seq = rows / batch;
        let total = past + seq;
        let mut qkv = matrix(qkv_buffer, rows, 3 * embed);
        self.c_attn
            .forward_into(x, Activation::Identity, None, qkv.view_mut())?;
        let qkv = qkv
            .into_shape_with_order((batch, seq, 3, heads, head_dim))
            .expect("c_attn output is (tokens, 3 × embed)");
        let (cache_keys, cache_values) = cache;
        cache_keys
            .slice_mut(s![.., .., past..total, ..])
            .assign(&qkv.slice(s![.., .., 1, .., ..]).permuted_axes([0, 2, 1, 3]));
        cache_values
            .slice_mut(s![.., .., past..total, ..])
            .assign(&qkv.slice(s![.., .., 2, .., ..]).permuted_axes([0, 2, 1, 3]));
        let queries = qkv.slice(s![.., .., 0, .., ..]).permuted_axes([0, 2, 1, 3]); // (batch, heads, seq, head_dim)
        let keys = cache_keys.slice(s![.., .., ..total, ..]); // (batch, heads, total, head_dim)
        let values = cache_values.slice(s![.., .., ..total, ..]);
        // every element is written by the attention
        let mut context = matrix(context_buffer, rows, embed);
        let mask = AttentionMask {
            key_padding: Some(key_padding),
            causal: true,
            bias: None,
        };
        attention_into(
            queries,
            keys,
            values,
            &mask,
            self.scale,
            context
                .view_mut()
                .into_shape_with_order((batch, seq, heads, head_dim))
                .expect("context is (batch, seq, heads, head_dim)")
                .permuted_axes([0, 2, 1, 3]),
        );
        Ok(self
            .c_proj
            .forward_into(context.view(), Activation::Identity, residual, out)?)
    }
}

/// modeling_gpt2.py `GPT2MLP`: `c_proj(activation(c_fc(x)))`, position by position.
#[derive(Debug, Clone)]
pub struct Gpt2Mlp {
    c_fc: Linear,
    c_proj: Linear,
    activation: Activation,
}

impl Gpt2Mlp {
    /// Loads `c_fc` and `c_proj` (`Conv1D`s: weights stored `[in, out]`); the activation is the
    /// config's `activation_function`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full dotted path.
    pub fn load(weights: &Weights, config: &Gpt2Config) -> Result<Self> {
        let inner = config.inner_dim();
        Ok(Self {
            c_fc: Linear::from_conv1d(&weights.sub("c_fc"), config.n_embd, inner)?,
            c_proj: Linear::from_conv1d(&weights.sub("c_proj"), inner, config.n_embd)?,
            activation: activation_of(config.activation_function),
        })
    }

    /// `c_proj(activation(c_fc(hidden)))` (no residual: [`Gpt2Block`] adds it).
    ///
    /// # Shapes
    /// `hidden`: (batch, seq, n_embd); result: (batch, seq, n_embd).
    ///
    /// # Errors
    /// A width other than `n_embd`.
    pub fn forward(&self, hidden: ArrayView3<'_, f32>) -> Result<Array3<f32>> {
        run_block("Gpt2Mlp", hidden, None, |mut rows, _, _, workspace| {
            let mut out = Array2::<f32>::zeros(rows.dim());
            self.forward_into(
                rows.view(),
                None,
                &mut workspace.intermediate,
                out.view_mut(),
            )?;
            rows.assign(&out);
            Ok(())
        })
    }

    /// `out ← c_proj(act(c_fc(x))) + residual`, the inner activations in `inner_buffer`.
    fn forward_into(
        &self,
        x: ArrayView2<'_, f32>,
        residual: Option<ArrayView2<'_, f32>>,
        inner_buffer: &mut Vec<f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let mut inner = matrix(inner_buffer, x.nrows(), self.c_fc.out_features());
        self.c_fc
            .forward_into(x, self.activation, None, inner.view_mut())?;
        Ok(self
            .c_proj
            .forward_into(inner.view(), Activation::Identity, residual, out)?)
    }
}

/// modeling_gpt2.py `GPT2Block`: pre-LayerNorm attention and MLP, each with a residual.
#[derive(Debug, Clone)]
pub struct Gpt2Block {
    ln_1: LayerNorm,
    attn: Gpt2Attention,
    ln_2: LayerNorm,
    mlp: Gpt2Mlp,
}

impl Gpt2Block {
    /// Loads `ln_1`, `attn`, `ln_2`, `mlp`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full dotted path.
    pub fn load(weights: &Weights, config: &Gpt2Config) -> Result<Self> {
        let (dim, eps) = (config.n_embd, config.layer_norm_epsilon);
        Ok(Self {
            ln_1: LayerNorm::load(&weights.sub("ln_1"), dim, eps)?,
            attn: Gpt2Attention::load(&weights.sub("attn"), config)?,
            ln_2: LayerNorm::load(&weights.sub("ln_2"), dim, eps)?,
            mlp: Gpt2Mlp::load(&weights.sub("mlp"), config)?,
        })
    }

    /// One block: `h + attn(ln_1(h))`, then `h + mlp(ln_2(h))`, on the first `seq` positions of
    /// each row (no cached positions before them). The last block's output is before `ln_f`.
    ///
    /// # Shapes
    /// `hidden`: (batch, seq, n_embd); `attention_mask`: (batch, seq), 1 for real tokens and 0
    /// for padding, `None` for all real; result: (batch, seq, n_embd).
    ///
    /// # Errors
    /// [`Error::Input`] for an empty batch or sequence, or a mask of another shape; a width
    /// other than `n_embd`.
    pub fn forward(
        &self,
        hidden: ArrayView3<'_, f32>,
        attention_mask: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array3<f32>> {
        run_gpt2_block(
            "Gpt2Block",
            hidden,
            attention_mask,
            (self.attn.num_heads, self.attn.head_dim),
            |rows, step, cache, workspace| self.forward_in_place(rows, step, cache, workspace),
        )
    }

    /// `hidden ← block(hidden)`, the intermediate results in `workspace`.
    ///
    /// # Shapes
    /// `hidden`: (batch × seq, embed).
    fn forward_in_place(
        &self,
        mut hidden: ArrayViewMut2<'_, f32>,
        step: &Step<'_>,
        cache: (&mut Array4<f32>, &mut Array4<f32>),
        workspace: &mut Workspace,
    ) -> Result<()> {
        let (rows, embed) = hidden.dim();
        let mut normed = matrix(&mut workspace.normed, rows, embed);
        normed.assign(&hidden);
        self.ln_1.forward_in_place(normed.view_mut(), None)?;
        let mut attended = matrix(&mut workspace.attention_output, rows, embed);
        self.attn.forward_into(
            normed.view(),
            Some(hidden.view()),
            step,
            cache,
            (&mut workspace.qkv, &mut workspace.context),
            attended.view_mut(),
        )?;
        let mut normed = matrix(&mut workspace.normed, rows, embed);
        normed.assign(&attended);
        self.ln_2.forward_in_place(normed.view_mut(), None)?;
        // The block's input is read for the last time above: its output takes its place.
        self.mlp.forward_into(
            normed.view(),
            Some(attended.view()),
            &mut workspace.intermediate,
            hidden.view_mut(),
        )
    }
}

/// What [`Gpt2Model::forward`] returns.
#[derive(Clone, Debug)]
pub struct Gpt2Output {
    /// After `ln_f`: (batch, seq, n_embd).
    pub last_hidden_state: Array3<f32>,
    /// When asked for: the embeddings' output, then each block's (the last one after `ln_f`,
    /// as transformers), each (batch, seq, n_embd); empty otherwise.
    pub hidden_states: Vec<Array3<f32>>,
}

/// The inputs of one forward pass.
///
/// # Shapes
/// `input_ids`, `position_ids`: (batch, seq); `attention_mask`: (batch, past + seq), 1 for
/// real tokens and 0 for padding, covering the cached positions too.
#[derive(Clone, Copy, Debug)]
pub struct Gpt2Input<'a> {
    /// Token ids.
    pub input_ids: ArrayView2<'a, u32>,
    /// Positions; `None`: `past .. past + seq` for every row (transformers' default).
    pub position_ids: Option<ArrayView2<'a, u32>>,
    /// Padding mask over cached and new keys; `None`: every key is a real token.
    pub attention_mask: Option<ArrayView2<'a, f32>>,
}

/// modeling_gpt2.py `GPT2Model`: embeddings, blocks, final LayerNorm.
pub struct Gpt2Model {
    wte: Embedding,
    wpe: Embedding,
    h: Vec<Gpt2Block>,
    ln_f: LayerNorm,
    config: Gpt2Config,
    workspace: SharedWorkspace,
}

impl Gpt2Model {
    /// Loads the weights under `weights` (`wte.weight`, `wpe.weight`, `h.{i}.*`, `ln_f.*`).
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full dotted path.
    pub fn load(weights: &Weights, config: &Gpt2Config) -> Result<Self> {
        let embed = config.n_embd;
        let h = (0..config.n_layer)
            .map(|index| Gpt2Block::load(&weights.sub("h").sub(index), config))
            .collect::<Result<_>>()?;
        Ok(Self {
            wte: Embedding::load(&weights.sub("wte"), config.vocab_size, embed)?,
            wpe: Embedding::load(&weights.sub("wpe"), config.n_positions, embed)?,
            h,
            ln_f: LayerNorm::load(&weights.sub("ln_f"), embed, config.layer_norm_epsilon)?,
            config: config.clone(),
            workspace: SharedWorkspace::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// An empty [`KvCache`] for `batch` sequences of up to `capacity` positions.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> KvCache {
        KvCache::new(&self.config, batch, capacity)
    }

    /// Runs the model on `input`, after the positions already in `cache` (if any), and appends
    /// the new keys and values to it. Without a cache, a temporary one is used.
    ///
    /// # Shapes
    /// See [`Gpt2Input`]; the output is (batch, seq, n_embd).
    ///
    /// # Errors
    /// A token id not below `vocab_size`, a position not below `n_positions`, a mask or
    /// position shape that does not match the ids, a cache of another batch size or too small.
    pub fn forward(
        &self,
        input: &Gpt2Input<'_>,
        cache: Option<&mut KvCache>,
        output_hidden_states: bool,
    ) -> Result<Gpt2Output> {
        let (batch, seq) = input.input_ids.dim();
        let mut own_cache;
        let cache = match cache {
            Some(cache) => cache,
            None => {
                own_cache = self.new_cache(batch, seq);
                &mut own_cache
            }
        };
        let past = cache.len();
        self.check_input(input, cache)?;
        let total = past + seq;
        let ones;
        let key_padding = match input.attention_mask {
            Some(mask) => mask,
            None => {
                ones = Array2::<f32>::ones((batch, total));
                ones.view()
            }
        };

        let mut hidden = self.embed(input, past)?; // (batch × seq, embed)
        let embed = self.config.n_embd;
        let as_3d = |hidden: &Array2<f32>| {
            hidden
                .clone()
                .into_shape_with_order((batch, seq, embed))
                .expect("hidden is (batch × seq, embed)")
        };
        let step = Step {
            batch,
            key_padding,
            past,
        };
        let mut hidden_states = Vec::new();
        self.workspace.with(|workspace| {
            for (index, block) in self.h.iter().enumerate() {
                if output_hidden_states {
                    hidden_states.push(as_3d(&hidden));
                }
                let layer_cache = (&mut cache.keys[index], &mut cache.values[index]);
                block.forward_in_place(hidden.view_mut(), &step, layer_cache, workspace)?;
            }
            Ok::<_, Error>(())
        })?;
        let last = self.ln_f.forward(hidden.view(), None)?;
        cache.len = total;
        let last_hidden_state = as_3d(&last);
        if output_hidden_states {
            hidden_states.push(last_hidden_state.clone());
        }
        Ok(Gpt2Output {
            last_hidden_state,
            hidden_states,
        })
    }

    fn check_input(&self, input: &Gpt2Input<'_>, cache: &KvCache) -> Result<()> {
        let (batch, seq) = input.input_ids.dim();
        if batch == 0 || seq == 0 {
            return Err(input_error(
                "transformer",
                if batch == 0 {
                    format!("an empty batch: input_ids of shape ({batch}, {seq})")
                } else {
                    format!("no input positions: input_ids of shape ({batch}, {seq})")
                },
            ));
        }
        let total = cache.len() + seq;
        if cache.batch_size() != batch || cache.capacity() < total {
            return Err(input_error(
                "transformer",
                format!(
                    "the KV cache holds {} rows of up to {} positions ({} used), but {batch} rows of {seq} more were given",
                    cache.batch_size(),
                    cache.capacity(),
                    cache.len()
                ),
            ));
        }
        if let Some(positions) = input.position_ids
            && positions.dim() != (batch, seq)
        {
            return Err(input_error(
                "transformer",
                format!(
                    "position_ids have shape {:?}, input_ids {:?}",
                    positions.shape(),
                    input.input_ids.shape()
                ),
            ));
        }
        if let Some(mask) = input.attention_mask
            && mask.dim() != (batch, total)
        {
            return Err(input_error(
                "transformer",
                format!(
                    "attention_mask has shape {:?}, expected ({batch}, {total}): cached plus new positions",
                    mask.shape()
                ),
            ));
        }
        Ok(())
    }

    /// `wte[ids] + wpe[positions]` (modeling_gpt2.py `GPT2Model.forward`).
    fn embed(&self, input: &Gpt2Input<'_>, past: usize) -> Result<Array2<f32>> {
        let (batch, seq) = input.input_ids.dim();
        let embed = self.config.n_embd;
        let (vocab, positions) = (self.config.vocab_size, self.config.n_positions);
        let wte = self.wte.table();
        let wpe = self.wpe.table();
        let mut hidden = Array2::<f32>::zeros((batch * seq, embed));
        for b in 0..batch {
            for t in 0..seq {
                let id = input.input_ids[[b, t]] as usize;
                let position = match input.position_ids {
                    Some(ids) => ids[[b, t]] as usize,
                    None => past + t,
                };
                if id >= vocab {
                    return Err(input_error(
                        "transformer.wte",
                        format!("token id {id} is not below vocab_size {vocab}"),
                    ));
                }
                if position >= positions {
                    return Err(input_error(
                        "transformer.wpe",
                        format!(
                            "position {position} is not below n_positions {positions}: the sequence is longer than the model allows"
                        ),
                    ));
                }
                let mut row = hidden.row_mut(b * seq + t);
                row.assign(&wte.row(id));
                row += &wpe.row(position);
            }
        }
        Ok(hidden)
    }
}

/// modeling_gpt2.py `GPT2LMHeadModel`: [`Gpt2Model`] and an LM head tied to `wte` (unless the
/// config unties it and the checkpoint stores `lm_head.weight`).
pub struct Gpt2LmHeadModel {
    transformer: Gpt2Model,
    /// `[vocab, n_embd]`, no bias.
    lm_head: Linear,
    /// The same weight unpacked, `[vocab, n_embd]` (in place in the checkpoint when f32): the
    /// exact recheck of [`Gpt2LmHeadModel::greedy_token`].
    lm_head_weight: Tensor,
    /// The 8-bit screen of `lm_head_weight`, made on the first greedy step (`None` inside when the
    /// weights cannot be screened).
    screen: OnceLock<Option<ArgmaxScreen>>,
}

impl Gpt2LmHeadModel {
    /// Loads `config.json` and the weights of a model folder.
    ///
    /// # Errors
    /// A missing or invalid config, a config of another `model_type`, missing weights.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let config = match ModelConfig::from_folder(dir)? {
            ModelConfig::Gpt2(config) => config,
            other => {
                return Err(Error::ConfigField {
                    source_name: dir.join("config.json").display().to_string(),
                    field: "model_type".to_string(),
                    reason: format!("expected `gpt2`, found `{}`", other.model_type()),
                });
            }
        };
        let weights = Weights::from_folder(dir)?;
        Self::load(weights, &config)
    }

    /// Loads from a checkpoint holding `transformer.*` (as saved by `GPT2LMHeadModel`) or the
    /// bare `GPT2Model` names.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full dotted path.
    pub fn load(mut weights: Weights, config: &Gpt2Config) -> Result<Self> {
        let body = if weights.has_sub("transformer") {
            "transformer."
        } else {
            ""
        };
        ModelConfig::Gpt2(config.clone()).tie_weights(
            &mut weights,
            "lm_head.weight",
            &format!("{body}wte.weight"),
        );
        let transformer = Gpt2Model::load(&weights.sub_if_present("transformer"), config)?;
        let head = weights.sub("lm_head");
        let lm_head = Linear::load_without_bias(&head, config.n_embd, config.vocab_size)?;
        let lm_head_weight = head.get("weight", &[config.vocab_size, config.n_embd])?;
        Ok(Self {
            transformer,
            lm_head,
            lm_head_weight,
            screen: OnceLock::new(),
        })
    }

    /// The body.
    pub fn transformer(&self) -> &Gpt2Model {
        &self.transformer
    }

    /// The configuration.
    pub fn config(&self) -> &Gpt2Config {
        self.transformer.config()
    }

    /// An empty [`KvCache`] for `batch` sequences of up to `capacity` positions.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> KvCache {
        self.transformer.new_cache(batch, capacity)
    }

    /// Logits at every position, and the hidden states when asked for.
    ///
    /// # Shapes
    /// See [`Gpt2Input`]; logits: (batch, seq, vocab).
    ///
    /// # Errors
    /// As [`Gpt2Model::forward`].
    pub fn forward(
        &self,
        input: &Gpt2Input<'_>,
        cache: Option<&mut KvCache>,
        output_hidden_states: bool,
    ) -> Result<(Array3<f32>, Gpt2Output)> {
        let output = self
            .transformer
            .forward(input, cache, output_hidden_states)?;
        let (batch, seq, embed) = output.last_hidden_state.dim();
        let hidden = output
            .last_hidden_state
            .view()
            .into_shape_with_order((batch * seq, embed))
            .expect("last_hidden_state is contiguous");
        let logits = self
            .lm_head
            .forward(hidden)?
            .into_shape_with_order((batch, seq, self.config().vocab_size))
            .expect("logits are (batch × seq, vocab)");
        Ok((logits, output))
    }

    /// Logits of the last position of each row only: what decoding needs, without the LM head
    /// product for the other positions.
    ///
    /// # Shapes
    /// See [`Gpt2Input`]; logits: (batch, vocab).
    ///
    /// # Errors
    /// As [`Gpt2Model::forward`]; also when `seq` is 0.
    pub fn forward_last(
        &self,
        input: &Gpt2Input<'_>,
        cache: Option<&mut KvCache>,
    ) -> Result<Array2<f32>> {
        let last = self.forward_last_hidden(input, cache)?;
        self.logits(last.view())
    }

    /// The final hidden state (after `ln_f`) of the last position of each row: the input of the
    /// LM head, for [`Gpt2LmHeadModel::logits`] or [`Gpt2LmHeadModel::greedy_token`].
    ///
    /// # Shapes
    /// See [`Gpt2Input`]; result: (batch, n_embd).
    ///
    /// # Errors
    /// As [`Gpt2Model::forward`]; also when `seq` is 0.
    pub fn forward_last_hidden(
        &self,
        input: &Gpt2Input<'_>,
        cache: Option<&mut KvCache>,
    ) -> Result<Array2<f32>> {
        if input.input_ids.ncols() == 0 {
            return Err(input_error(
                "transformer",
                "no input positions to predict from".to_string(),
            ));
        }
        let output = self.transformer.forward(input, cache, false)?;
        let seq = output.last_hidden_state.dim().1;
        Ok(output
            .last_hidden_state
            .slice(s![.., seq - 1, ..])
            .to_owned())
    }

    /// The LM head: `hidden · lm_headᵀ`.
    ///
    /// # Shapes
    /// `hidden`: (rows, n_embd); result: (rows, vocab).
    ///
    /// # Errors
    /// A `hidden` of the wrong width.
    pub fn logits(&self, hidden: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        Ok(self.lm_head.forward(hidden)?)
    }

    /// The id of the largest logit of one hidden state, the first on ties: the answer of
    /// [`Gpt2LmHeadModel::logits`] followed by an argmax, bit for bit, but found by streaming an
    /// 8-bit copy of the LM head (a quarter of the bytes) and rechecking in f32 only the rows it
    /// cannot rule out ([`ArgmaxScreen`]). `Ok(None)` when the screen cannot decide (non-finite
    /// values, a CPU or GEMM path it does not cover): then compute the logits.
    ///
    /// The first call makes the screen (an 8-bit copy of the head: vocab × n_embd bytes).
    ///
    /// # Shapes
    /// `hidden`: n_embd.
    ///
    /// # Errors
    /// [`Error::Input`] when `hidden` is not n_embd long.
    pub fn greedy_token(&self, hidden: &[f32]) -> Result<Option<u32>> {
        let Ok(weight) = self.lm_head_weight.view2() else {
            return Ok(None);
        };
        if hidden.len() != weight.ncols() {
            return Err(input_error(
                "lm_head",
                format!(
                    "a hidden state of {} values, expected n_embd = {}",
                    hidden.len(),
                    weight.ncols()
                ),
            ));
        }
        let Some(screen) = self
            .screen
            .get_or_init(|| ArgmaxScreen::from_linear_weight(weight))
            .as_ref()
        else {
            return Ok(None);
        };
        Ok(screen
            .argmax(hidden, weight)
            .and_then(|index| u32::try_from(index).ok()))
    }
}

/// What GPT-2 keeps between decoding steps: the [`KvCache`] and each row's prompt padding,
/// from which the mask over cached keys and the position ids follow.
#[derive(Clone, Debug)]
pub struct Gpt2GenerationCache {
    kv: KvCache,
    /// Per row: 1 for the prompt's real tokens, 0 for its padding.
    prompt_mask: Vec<Vec<f32>>,
}

impl Gpt2GenerationCache {
    /// The keys and values.
    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// The mask over `total` positions of each row: the prompt's, then 1 for every generated
    /// token.
    fn attention_mask(&self, total: usize) -> Array2<f32> {
        Array2::from_shape_fn((self.prompt_mask.len(), total), |(row, position)| {
            self.prompt_mask[row].get(position).copied().unwrap_or(1.0)
        })
    }

    /// Position ids of positions `from .. to` of each row: `cumsum(mask) − 1`, 1 on padding
    /// (`GenerationMixin.prepare_inputs_for_generation`).
    fn position_ids(&self, from: usize, to: usize) -> Array2<u32> {
        let mut positions = Array2::<u32>::zeros((self.prompt_mask.len(), to - from));
        for (row, mask) in self.prompt_mask.iter().enumerate() {
            let mut seen = 0u32;
            for position in 0..to {
                let real = mask.get(position).is_none_or(|&m| m != 0.0);
                let id = if real {
                    seen += 1;
                    seen - 1
                } else {
                    1
                };
                if position >= from {
                    positions[[row, position - from]] = id;
                }
            }
        }
        positions
    }
}

impl Gpt2LmHeadModel {
    /// The [`Gpt2Input`] of `input_ids` after what `cache` holds.
    fn generation_input<'a>(
        input_ids: ArrayView2<'a, u32>,
        cache: &Gpt2GenerationCache,
        positions: &'a Array2<u32>,
        mask: &'a Array2<f32>,
    ) -> Result<Gpt2Input<'a>> {
        if input_ids.nrows() != cache.prompt_mask.len() {
            return Err(input_error(
                "transformer",
                format!(
                    "{} rows given to a generation cache of {}",
                    input_ids.nrows(),
                    cache.prompt_mask.len()
                ),
            ));
        }
        Ok(Gpt2Input {
            input_ids,
            position_ids: Some(positions.view()),
            attention_mask: Some(mask.view()),
        })
    }
}

impl Generative for Gpt2LmHeadModel {
    type Cache = Gpt2GenerationCache;

    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.config().n_positions)
    }

    fn is_encoder_decoder(&self) -> bool {
        false
    }

    fn start(
        &self,
        prompts: &Prompts,
        expand: usize,
        capacity: usize,
        _decoder_start_token_id: Option<u32>,
    ) -> Result<(Gpt2GenerationCache, Vec<Vec<u32>>)> {
        let rows = prompts.expanded(expand);
        let prompt_mask = rows
            .attention_mask()
            .iter()
            .map(|mask| mask.iter().map(|&m| m as f32).collect())
            .collect();
        let cache = Gpt2GenerationCache {
            kv: self.new_cache(rows.len(), capacity),
            prompt_mask,
        };
        Ok((cache, rows.input_ids().to_vec()))
    }

    fn forward_last(
        &self,
        input_ids: ArrayView2<'_, u32>,
        cache: &mut Gpt2GenerationCache,
    ) -> Result<Array2<f32>> {
        let from = cache.kv.len();
        let to = from + input_ids.ncols();
        let (positions, mask) = (cache.position_ids(from, to), cache.attention_mask(to));
        let input = Self::generation_input(input_ids, cache, &positions, &mask)?;
        Gpt2LmHeadModel::forward_last(self, &input, Some(&mut cache.kv))
    }

    /// Through the 8-bit screen of the LM head ([`Gpt2LmHeadModel::greedy_token`]); the logits
    /// when it cannot decide a row.
    fn forward_last_greedy(
        &self,
        input_ids: ArrayView2<'_, u32>,
        cache: &mut Gpt2GenerationCache,
    ) -> Result<NextStep> {
        let from = cache.kv.len();
        let to = from + input_ids.ncols();
        let (positions, mask) = (cache.position_ids(from, to), cache.attention_mask(to));
        let input = Self::generation_input(input_ids, cache, &positions, &mask)?;
        let hidden = self.forward_last_hidden(&input, Some(&mut cache.kv))?;
        // A row the screen cannot decide (or not contiguous) makes the whole step take logits.
        let mut tokens = Some(Vec::with_capacity(hidden.nrows()));
        for row in hidden.rows() {
            let token = match row.as_slice() {
                Some(row) => self.greedy_token(row)?,
                None => None,
            };
            match (token, tokens.as_mut()) {
                (Some(token), Some(decided)) => decided.push(token),
                _ => {
                    tokens = None;
                    break;
                }
            }
        }
        Ok(match tokens {
            Some(tokens) => NextStep::Tokens(tokens),
            None => NextStep::Logits(self.logits(hidden.view())?),
        })
    }

    fn reorder_cache(&self, cache: &mut Gpt2GenerationCache, rows: &[usize]) -> Result<()> {
        cache.kv.reorder_rows(rows)?;
        cache.prompt_mask = rows
            .iter()
            .map(|&row| cache.prompt_mask[row].clone())
            .collect();
        Ok(())
    }
}
