//! Flax's seq2seq example (`examples/seq2seq` upstream, listed in the spec at L8899): an
//! LSTM encoder-decoder that learns to add numbers given as strings ("12+345" → "357"),
//! the problems generated on the fly; teacher forcing in training, greedy decoding in
//! evaluation; the loss and the exact-match accuracy in the log, a checkpoint at every log
//! line that `--resume` continues from, the curves as a PNG and a table of decoded problems.
//!
//! `cargo run --release -p flax-examples --example seq2seq -- --help`
//!
//! The model is upstream's line for line: an `nn::RNN` of an `LSTMCell` encodes the one-hot
//! query up to its EOS token, and an `nn::RNN` of a `DecoderLSTMCell` (an `LSTMCell`, then a
//! `Dense` over the vocabulary) decodes from the encoder's carry and the "=" token. Both RNNs
//! run their cell under `scan`. The parameter tree is Flax's (`LSTMCell_0` for the encoder's
//! cell, `DecoderLSTMCell_0/{LSTMCell_0, Dense_0}` for the decoder's).
//!
//! Differences from upstream, each for a reason (`scripts/reference/seq2seq.py` runs the same
//! protocol in real Flax):
//! - without teacher forcing the decoder feeds back its greedy prediction (argmax) instead of a
//!   `jax.random.categorical` sample from an `lstm` RNG stream, so evaluation is deterministic;
//! - the problems come from `jax.random.randint` (upstream: Python's `random`), the batch of
//!   step `s` from `fold_in(train_rng, s)`, so the Flax reference sees the same ones and a
//!   resumed run the same as an uninterrupted one; a fixed test set is decoded at every log;
//! - a smaller default size (hidden 128, 6,000 steps; upstream 512 and 10,000) so that a run
//!   takes minutes on a CPU;
//! - `RNNCellBase::step` returns one tensor per step, so the decoder's outputs are its logits
//!   and the predictions are their argmax (upstream returns both, `(logits, prediction)`).

use clap::Parser;
use flax::nn::RNNCellBase;
use flax::optax::{self, Adam};
use flax::prelude::*;
use flax::tch;
use flax::training::checkpoints::{
    latest_checkpoint, restore_checkpoint, save_checkpoint, RestoreCheckpointOptions, SaveCheckpointOptions,
};
use flax::training::TrainState;
use flax_examples::{device, exit_on_error, plot_curves, progress_bar, work_dir, Curves};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// An LSTM carry `(c, h)`.
type LSTMCarry = (Tensor, Tensor);

/// The decoder's cell: an `LSTMCell` then a `Dense` over the vocabulary. Its carry is the LSTM
/// state and the last prediction (one-hot); without teacher forcing the last prediction is
/// the step's input.
#[module]
pub struct DecoderLSTMCell {
    pub teacher_force: bool,
    pub vocab_size: i64,
}

#[module]
impl DecoderLSTMCell {
    #[compact]
    #[shape(x: [B, self.vocab_size])]
    pub fn call(
        &self,
        cx: &mut Scope,
        carry: &(LSTMCarry, Tensor),
        x: &Tensor,
    ) -> Result<((LSTMCarry, Tensor), Tensor)> {
        let (lstm_state, last_prediction) = carry;
        let x = if self.teacher_force { x } else { last_prediction };
        let (lstm_state, y) = nn::LSTMCell::new().call(cx, lstm_state, x)?;
        let logits = nn::Dense::new(self.vocab_size).call(cx, &y)?;
        // Greedy: the most likely token, one-hot, is the next step's input.
        let predicted_token = logits.argmax(-1, false);
        let prediction = nn::one_hot(&predicted_token, self.vocab_size)?;
        Ok(((lstm_state, prediction), logits))
    }
}

impl RNNCellBase for DecoderLSTMCell {
    type Carry = (LSTMCarry, Tensor);

    fn step(
        &self,
        cx: &mut Scope<'_>,
        carry: &Self::Carry,
        inputs: &Tensor,
    ) -> Result<(Self::Carry, Tensor)> {
        self.call(cx, carry, inputs)
    }

    /// The decoder starts from the encoder's carry and the "=" token: there is no default.
    fn initialize_carry(_: PRNGKey, _: &[i64], _: &[i64], _: Device) -> Result<Self::Carry> {
        Err(flax::Error::Value(
            "the decoder needs an initial carry (the encoder's state and the first token)".into(),
        ))
    }
}

/// Sequence-to-sequence model: an LSTM encoder and an LSTM decoder.
/// `teacher_force`: whether the decoder reads `decoder_inputs` at every step, or only the first
/// (the "=" token) and then its own predictions.
#[module]
pub struct Seq2seq {
    pub teacher_force: bool,
    pub hidden_size: i64,
    pub vocab_size: i64,
    #[module(default = 1)]
    pub eos_id: i64,
}

#[module]
impl Seq2seq {
    /// `encoder_inputs` `(batch, max_input_len, vocab)` and `decoder_inputs` `(batch,
    /// max_output_len, vocab)`, one-hot; returns the decoder's logits `(batch, max_output_len - 1,
    /// vocab)`. The second axis of `decoder_inputs` sets how many steps are decoded.
    #[compact]
    #[shape(encoder_inputs: [B, S, self.vocab_size], decoder_inputs: [B, T, self.vocab_size] -> [B, _, self.vocab_size])]
    pub fn call(&self, cx: &mut Scope, encoder_inputs: &Tensor, decoder_inputs: &Tensor) -> Result<Tensor> {
        let encoder = nn::RNN::new(nn::LSTMCell::new(), self.hidden_size).name("encoder");
        let decoder =
            nn::RNN::new(DecoderLSTMCell::new(self.teacher_force, self.vocab_size), self.hidden_size)
                .name("decoder");

        let seq_lengths = self.get_seq_lengths(encoder_inputs);

        let (encoder_state, _) = encoder.call(cx, encoder_inputs, None, Some(&seq_lengths))?;
        let steps = decoder_inputs.size()[1] - 1;
        let initial_carry = (encoder_state, decoder_inputs.select(1, 0));
        let (_, logits) =
            decoder.call(cx, &decoder_inputs.narrow(1, 0, steps), Some(&initial_carry), None)?;
        Ok(logits)
    }
}

impl Seq2seq {
    /// The position of each query's EOS token: the encoder's carry is the one after the last
    /// character.
    fn get_seq_lengths(&self, inputs: &Tensor) -> Tensor {
        let inputs = inputs.argmax(-1, false); // undo one-hot encoding
        inputs.eq(self.eos_id).to_kind(Kind::Int64).argmax(-1, false)
    }
}

/// Encodes and decodes between strings and token ids: 0 is padding, 1 is EOS, then the
/// sorted characters (upstream's `CharacterTable`).
struct CharacterTable {
    chars: Vec<char>,
    max_len_query_digit: u32,
}

impl CharacterTable {
    const PAD_ID: i64 = 0;
    const EOS_ID: i64 = 1;

    fn new(chars: &str, max_len_query_digit: u32) -> Self {
        let mut chars: Vec<char> = chars.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        CharacterTable { chars, max_len_query_digit }
    }

    /// All characters, padding and EOS.
    fn vocab_size(&self) -> i64 {
        self.chars.len() as i64 + 2
    }

    /// "digits+digits" and EOS.
    fn max_input_len(&self) -> i64 {
        i64::from(self.max_len_query_digit) * 2 + 2
    }

    /// "=", one more digit than the longest number, and EOS.
    fn max_output_len(&self) -> i64 {
        i64::from(self.max_len_query_digit) + 3
    }

    /// The token ids of `text` followed by EOS, padded to `max_len`.
    fn encode(&self, text: &str, max_len: i64) -> Vec<i64> {
        let ids = text
            .chars()
            .map(|c| self.chars.iter().position(|&x| x == c).map_or(Self::PAD_ID, |i| i as i64 + 2));
        let mut ids: Vec<i64> = ids.chain([Self::EOS_ID]).collect();
        ids.resize(max_len as usize, Self::PAD_ID);
        ids
    }

    /// The characters of `ids` up to the first EOS ("_" for padding).
    fn decode(&self, ids: &[i64]) -> String {
        let ids = ids.iter().take_while(|&&id| id != Self::EOS_ID);
        ids.map(|&id| if id >= 2 { self.chars[(id - 2) as usize] } else { '_' }).collect()
    }

    /// `texts` one-hot, `(len, max_len, vocab)`, on `device`.
    fn encode_onehot(&self, texts: &[String], max_len: i64, device: Device) -> Result<Tensor> {
        let ids: Vec<i64> = texts.iter().flat_map(|t| self.encode(t, max_len)).collect();
        let ids = Tensor::from_slice(&ids).reshape([texts.len() as i64, max_len]).to_device(device);
        nn::one_hot(&ids, self.vocab_size())
    }

    /// The strings of a batch of one-hot (or logit) sequences.
    fn decode_onehot(&self, batch: &Tensor) -> Result<Vec<String>> {
        let ids = batch.argmax(-1, false).to_device(Device::Cpu);
        let rows: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(ids)?;
        Ok(rows.iter().map(|row| self.decode(row)).collect())
    }

    /// `batch_size` problems "a+b" (a < 100, b < 10^digits, the smaller first) drawn from
    /// `key` with `jax.random.randint`, as `(query, answer)` one-hot batches; the answer starts
    /// with the decoder's start token "=".
    fn get_batch(&self, key: PRNGKey, batch_size: i64, device: Device) -> Result<Batch> {
        let max_digit = 10i64.pow(self.max_len_query_digit) - 1;
        let (k1, k2) = key.split2();
        let draw = |key, high| -> Result<Vec<i64>> {
            Ok(Vec::<i64>::try_from(
                flax::random::randint(key, &[batch_size], 0, high, (Kind::Int, Device::Cpu))?
                    .to_kind(Kind::Int64),
            )?)
        };
        let (a, b) = (draw(k1, 100)?, draw(k2, max_digit + 1)?);
        let pairs: Vec<(i64, i64)> = a.iter().zip(&b).map(|(&a, &b)| (a.min(b), a.max(b))).collect();
        let queries: Vec<String> = pairs.iter().map(|(x, y)| format!("{x}+{y}")).collect();
        let answers: Vec<String> = pairs.iter().map(|(x, y)| format!("={}", x + y)).collect();
        Ok(Batch {
            query: self.encode_onehot(&queries, self.max_input_len(), device)?,
            answer: self.encode_onehot(&answers, self.max_output_len(), device)?,
        })
    }
}

/// One-hot queries `(batch, max_input_len, vocab)` and answers `(batch, max_output_len, vocab)`.
struct Batch {
    query: Tensor,
    answer: Tensor,
}

/// Sets the positions beyond each sequence's length to 0.
fn mask_sequences(sequence_batch: &Tensor, lengths: &Tensor) -> Tensor {
    let positions = Tensor::arange(sequence_batch.size()[1], (Kind::Int64, sequence_batch.device()));
    sequence_batch * lengths.unsqueeze(1).gt_tensor(&positions.unsqueeze(0))
}

/// The length of each one-hot sequence, EOS included (the full length when there is no EOS).
fn get_sequence_lengths(sequence_batch: &Tensor, eos_id: i64) -> Tensor {
    let eos_row = sequence_batch.select(2, eos_id);
    let eos_idx = eos_row.argmax(-1, false);
    let has_eos = eos_row.gather(1, &eos_idx.unsqueeze(1), false).squeeze_dim(1).gt(0.5);
    (eos_idx + 1)
        .where_self(&has_eos, &Tensor::from(sequence_batch.size()[1]).to_device(sequence_batch.device()))
}

/// The mean over the batch and positions of the cross-entropy, positions past each label's
/// EOS counting as zero.
fn cross_entropy_loss(logits: &Tensor, labels: &Tensor, lengths: &Tensor) -> Result<Tensor> {
    let xe = (nn::log_softmax(logits)? * labels).sum_dim_intlist(-1, false, Kind::Float);
    Ok(-mask_sequences(&xe, lengths).mean(Kind::Float))
}

/// The loss and the sequence accuracy (every token up to EOS right) of teacher-forced logits.
fn compute_metrics(logits: &Tensor, labels: &Tensor, eos_id: i64) -> Result<(f64, f64)> {
    let lengths = get_sequence_lengths(labels, eos_id);
    let loss = cross_entropy_loss(logits, labels, &lengths)?;
    let token_accuracy = logits.argmax(-1, false).eq_tensor(&labels.argmax(-1, false));
    let correct = mask_sequences(&token_accuracy.to_kind(Kind::Int64), &lengths).sum_dim_intlist(
        -1,
        false,
        Kind::Int64,
    );
    let accuracy = correct.eq_tensor(&lengths).to_kind(Kind::Float).mean(Kind::Float);
    Ok((loss.f_double_value(&[])?, accuracy.f_double_value(&[])?))
}

type State = TrainState<Seq2seq, FrozenDict, Adam>;

/// The log's columns.
const COLUMNS: [&str; 5] = ["step", "train_loss", "train_accuracy", "test_loss", "test_exact_match"];

#[derive(Parser)]
#[command(about = "Flax's seq2seq example: an LSTM encoder-decoder learns to add numbers given as strings")]
struct Args {
    /// Where the checkpoints, the log and the plot go [default: <temp dir>/flax-seq2seq].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Continue from the latest checkpoint in the work directory.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 0.003)]
    learning_rate: f64,
    #[arg(long, default_value_t = 128)]
    batch_size: i64,
    /// The LSTMs' hidden size (upstream: 512).
    #[arg(long, default_value_t = 128)]
    hidden_size: i64,
    /// Training steps [default: 6000, or 40 with --quick] (upstream: 10,000).
    #[arg(long)]
    num_train_steps: Option<i64>,
    /// Steps between log lines, test decodings and checkpoints [default: 200, or 20 with --quick].
    #[arg(long)]
    decode_frequency: Option<i64>,
    /// The most digits of a number in a query.
    #[arg(long, default_value_t = 3)]
    max_len_query_digit: u32,
    /// The number of test problems decoded at every log line.
    #[arg(long, default_value_t = 1000)]
    num_test: i64,
    /// Seed of the parameter initialisation and of the problems.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run on CUDA when available.
    #[arg(long)]
    cuda: bool,
    /// A fast run for the test suite: 40 steps, hidden size 32, 100 test problems.
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    exit_on_error(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let device = device(args.cuda);
    let num_train_steps = args.num_train_steps.unwrap_or(if args.quick { 40 } else { 6000 });
    let decode_frequency = args.decode_frequency.unwrap_or(if args.quick { 20 } else { 200 });
    let (hidden_size, num_test) = if args.quick { (32, 100) } else { (args.hidden_size, args.num_test) };
    for (flag, value) in [
        ("--batch-size", args.batch_size),
        ("--hidden-size", hidden_size),
        ("--num-test", num_test),
        ("--decode-frequency", decode_frequency),
    ] {
        if value < 1 {
            return Err(flax::Error::Value(format!("{flag} must be at least 1, got {value}")));
        }
    }
    if !(1..=9).contains(&args.max_len_query_digit) {
        return Err(flax::Error::Value(format!(
            "--max-len-query-digit must be between 1 and 9, got {}",
            args.max_len_query_digit
        )));
    }
    let workdir = work_dir(args.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(if args.quick { "flax-seq2seq-quick" } else { "flax-seq2seq" })
    }))?;
    let (ckpt_dir, log_path) = (workdir.join("checkpoints"), workdir.join("log.csv"));

    let ctable = CharacterTable::new("0123456789+= ", args.max_len_query_digit);
    let keys = PRNGKey::new(args.seed).split(3);
    let (init_rng, train_rng, test_rng) = (keys[0], keys[1], keys[2]);
    let mut state = get_train_state(&ctable, hidden_size, init_rng, args.learning_rate, device)?;
    let mut log = Curves::new(&COLUMNS);
    if args.resume && latest_checkpoint(&ckpt_dir, "checkpoint_")?.is_some() {
        state = restore_checkpoint(&ckpt_dir, state, &RestoreCheckpointOptions::default())?;
        log = Curves::load(&log_path, &COLUMNS)?;
        log.truncate_after(state.step as f64);
        println!("resumed at step {}", state.step);
    }
    let greedy = Seq2seq::new(false, hidden_size, ctable.vocab_size());
    let test = ctable.get_batch(test_rng, num_test, device)?;

    let start = Instant::now();
    let bar = progress_bar(num_train_steps as u64, "training".into());
    bar.set_position(state.step as u64);
    let mut sums = (0.0, 0.0);
    while state.step < num_train_steps {
        let batch = ctable.get_batch(train_rng.fold_in(state.step as u32 + 1), args.batch_size, device)?;
        let (next, (loss, accuracy)) = train_step(state, &batch)?;
        state = next;
        sums = (sums.0 + loss, sums.1 + accuracy);
        bar.inc(1);
        if state.step % decode_frequency == 0 || state.step == num_train_steps {
            let steps = (state.step - 1) % decode_frequency + 1;
            let (test_loss, exact_match, _) = evaluate(&state, &greedy, &ctable, &test)?;
            let row =
                [state.step as f64, sums.0 / steps as f64, sums.1 / steps as f64, test_loss, exact_match];
            bar.suspend(|| {
                println!(
                    "step: {}, train_loss: {:.4}, train_accuracy: {:.2}, test_loss: {:.4}, test_exact_match: {:.2}",
                    state.step,
                    row[1],
                    row[2] * 100.0,
                    test_loss,
                    exact_match * 100.0
                )
            });
            sums = (0.0, 0.0);
            log.push(&row)?;
            // A run that does not resume replaces the checkpoints of an earlier one (overwrite).
            let options = SaveCheckpointOptions::default().keep(2).overwrite(!args.resume);
            save_checkpoint(&ckpt_dir, &state, state.step, &options)?;
            log.save(&log_path)?;
        }
    }
    bar.finish_and_clear();
    println!("trained in {:.1} s; checkpoints in {}", start.elapsed().as_secs_f64(), ckpt_dir.display());
    let (_, exact_match, decoded) = evaluate(&state, &greedy, &ctable, &test)?;
    print_decodings(&decoded, 10);
    println!("test exact match: {:.2}% of {num_test} problems", exact_match * 100.0);

    let plot = workdir.join("seq2seq_curves.png");
    plot_curves(
        &plot,
        &log,
        &[("Loss", &["train_loss", "test_loss"]), ("Accuracy", &["train_accuracy", "test_exact_match"])],
    )
    .map_err(|e| flax::Error::Value(format!("could not plot {}: {e}", plot.display())))?;
    println!("curves in {}", plot.display());
    Ok(())
}

/// The teacher-forced model, its parameters from `init` on one-hot shapes, Adam.
fn get_train_state(
    ctable: &CharacterTable,
    hidden_size: i64,
    rng: PRNGKey,
    learning_rate: f64,
    device: Device,
) -> Result<State> {
    let model = Seq2seq::new(true, hidden_size, ctable.vocab_size());
    let shape = |len| Tensor::ones([1, len, ctable.vocab_size()], (Kind::Float, device));
    let variables = model.init(rng, &shape(ctable.max_input_len()), &shape(ctable.max_output_len()))?;
    let params = variables.get_dict("params").cloned().unwrap_or_default();
    TrainState::create(model, params, optax::adam(learning_rate))
}

/// A decoded test problem: `(query, inferred, golden)`.
type Decoded = (String, String, String);

/// `train_step`: the gradient of the masked cross-entropy with teacher forcing, applied by
/// Adam; the batch's loss and sequence accuracy.
fn train_step(state: State, batch: &Batch) -> Result<(State, (f64, f64))> {
    let labels = batch.answer.narrow(1, 1, batch.answer.size()[1] - 1);
    let lengths = get_sequence_lengths(&labels, CharacterTable::EOS_ID);
    let (grads, logits) = flax::grad_with_aux(&state.params, |params| {
        let logits = state.apply_fn.apply(&frozen_dict! { "params": params }, &batch.query, &batch.answer)?;
        Ok((cross_entropy_loss(&logits, &labels, &lengths)?, logits))
    })?;
    let state = state.apply_gradients(grads)?;
    let metrics = tch::no_grad(|| compute_metrics(&logits.detach(), &labels, CharacterTable::EOS_ID))?;
    Ok((state, metrics))
}

/// The test set's teacher-forced loss, and its greedy decoding: the exact-match accuracy and
/// `(query, inferred, golden)` for every problem.
fn evaluate(
    state: &State,
    greedy: &Seq2seq,
    ctable: &CharacterTable,
    test: &Batch,
) -> Result<(f64, f64, Vec<Decoded>)> {
    tch::no_grad(|| {
        let variables = frozen_dict! { "params": &state.params };
        let labels = test.answer.narrow(1, 1, test.answer.size()[1] - 1);
        let forced = state.apply_fn.apply(&variables, &test.query, &test.answer)?;
        let (test_loss, _) = compute_metrics(&forced, &labels, CharacterTable::EOS_ID)?;
        // Only the first decoder input is read: "=" at every position.
        let start = test.answer.narrow(1, 0, 1);
        let decoder_inputs = start.expand([-1, ctable.max_output_len(), -1], false);
        let inferred = ctable.decode_onehot(&greedy.apply(&variables, &test.query, &decoder_inputs)?)?;
        let golden = ctable.decode_onehot(&labels)?;
        let questions = ctable.decode_onehot(&test.query)?;
        let exact = inferred.iter().zip(&golden).filter(|(i, g)| i == g).count() as f64 / golden.len() as f64;
        let decoded = questions.into_iter().zip(inferred).zip(golden).map(|((q, i), g)| (q, i, g)).collect();
        Ok((test_loss, exact, decoded))
    })
}

/// A table of the first `n` decoded test problems.
fn print_decodings(decoded: &[Decoded], n: usize) {
    println!("| query   | decoded | answer | |");
    println!("|---------|---------|--------|-|");
    for (question, inferred, golden) in decoded.iter().take(n) {
        let mark = if inferred == golden { "✓" } else { "✗" };
        println!("| {question:<7} | {inferred:<7} | {golden:<6} |{mark}|");
    }
}
