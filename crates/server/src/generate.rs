//! Generation routes: TGI's `/generate` and `/generate_stream` (server-sent events, one per
//! token, the last one carrying `generated_text` and `details.finish_reason`) and OpenAI's
//! `/v1/completions` (`stream: true` ends with `data: [DONE]`). The tokens come from
//! `TextGenerationPipeline::stream` on the model thread; a client that goes away stops it.

use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use oxformer_pipelines::Task;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::metrics::Method;
use crate::routes::{Timings, tracked, tracked_as};
use crate::worker::{Computed, Job};
use crate::{Admission, JsonBody, SharedState};

/// A new token's log-probability and the most likely tokens of its step, with their texts
/// (each token decoded alone).
#[derive(Debug, Clone, PartialEq)]
struct Logprobs {
    logprob: f32,
    /// The token's own text, decoded alone.
    text: String,
    /// The step's most likely tokens, best first.
    top: Vec<TopToken>,
}

/// One of a step's most likely tokens (TGI's `Token` in `top_tokens`).
#[derive(Debug, Clone, PartialEq)]
struct TopToken {
    id: u32,
    /// Decoded alone.
    text: String,
    logprob: f32,
    special: bool,
}

/// What the model thread sends while generating.
#[derive(Debug)]
enum Generated {
    /// One new token, the text it completes and (when asked) its log-probabilities.
    Token {
        id: u32,
        text: String,
        special: bool,
        logprobs: Option<Logprobs>,
    },
    /// The end.
    Done(End),
    /// A failure before or during generation.
    Failed(ApiError),
}

/// A running generation: its events, the job's reply (dropping it cancels a queued job) and
/// the admitted input.
struct Running {
    events: mpsc::UnboundedReceiver<Generated>,
    _reply: oneshot::Receiver<Result<Computed<Value>, ApiError>>,
    _admission: Admission,
}

/// TGI's `--max-stop-sequences` default.
const MAX_STOP_SEQUENCES: usize = 4;

/// The stop sequences of a request (TGI's `parameters.stop`, OpenAI's `stop`): a string or a
/// list of at most [`MAX_STOP_SEQUENCES`] non-empty strings.
fn stop_sequences(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let stops: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(stop)) => vec![stop.clone()],
        Some(Value::Array(stops)) => stops
            .iter()
            .map(|stop| {
                stop.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::validation("`stop` must be a string or a list of strings")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::validation(
                "`stop` must be a string or a list of strings",
            ));
        }
    };
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::validation(format!(
            "`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {}",
            stops.len()
        )));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::validation("`stop` sequences cannot be empty"));
    }
    Ok(stops)
}

/// Admits one prompt and queues its generation with pipeline options `options`. Generation
/// also ends when the new text ends with one of `stops` (TGI's `StopSequenceCriteria`: checked
/// after each token, on the text so far; a full length or an end-of-sequence token wins over
/// it, as in TGI's `StoppingCriteria`). With `logprobs` (a number of most likely tokens), each
/// token comes with its log-probabilities.
async fn start(
    state: &SharedState,
    route: &str,
    prompt: String,
    options: Map<String, Value>,
    stops: Vec<String>,
    logprobs: Option<usize>,
) -> Result<Running, ApiError> {
    let model = state.ready()?;
    if model.task != Task::TextGeneration {
        return Err(ApiError::unsupported(route, &model.task_name));
    }
    if prompt.is_empty() {
        return Err(ApiError::empty("`inputs` cannot be empty"));
    }
    let admission = state.admit(1)?;
    // The prompt's tokens, counted on the tokenization threads: refused past the input limit
    // (TGI's validation), and counted in the batch metrics.
    let tokenizer = model.tokenizer.clone();
    let limit = model.max_input_length;
    let (prompt, input_length) = state
        .tokenization
        .run(move || {
            let length = tokenizer
                .encode(
                    prompt.as_str(),
                    &oxformer_tokenizer::EncodeOptions::default(),
                )
                .map_err(|error| ApiError::tokenizer(error.to_string()))?
                .len();
            Ok((prompt, length))
        })
        .await?;
    if input_length > limit {
        return Err(ApiError::validation(format!(
            "Input validation error: `inputs` must have less than {limit} tokens. Given: \
             {input_length}"
        )));
    }
    let (sender, events) = mpsc::unbounded_channel();
    let (reply, answer) = oneshot::channel();
    let enqueued = Instant::now();
    let work = Box::new(move |models: &mut crate::worker::Models| {
        let began = Instant::now();
        let pipeline = models
            .pipeline
            .text_generation()
            .expect("a text-generation pipeline");
        let result = (|| -> Result<(), ApiError> {
            let options = pipeline.options_from_json(&options)?;
            let special = pipeline.tokenizer().all_special_ids();
            let eos = options.generation.eos_token_id.clone();
            let max_new_tokens = options.generation.max_new_tokens;
            let mut text = String::new();
            let mut generated_tokens = 0;
            let mut last = None;
            let mut stopped_by = None;
            let mut stream = pipeline.stream(&prompt, &options)?;
            if let Some(top) = logprobs {
                stream = stream.with_logprobs(top);
            }
            let tokenizer = pipeline.tokenizer();
            let decode = |id: u32| {
                tokenizer
                    .decode(&[id], false, Some(false))
                    .map_err(|error| ApiError::tokenizer(error.to_string()))
            };
            for piece in stream {
                let piece = piece?;
                text.push_str(&piece.text);
                let event = match piece.token_id {
                    Some(id) => {
                        generated_tokens += 1;
                        last = Some(id);
                        let logprobs = match piece.logprobs {
                            Some(logprobs) => Some(Logprobs {
                                logprob: logprobs.logprob,
                                text: decode(id)?,
                                top: logprobs
                                    .top
                                    .iter()
                                    .map(|&(id, logprob)| {
                                        Ok(TopToken {
                                            id,
                                            text: decode(id)?,
                                            logprob,
                                            special: special.contains(&id),
                                        })
                                    })
                                    .collect::<Result<_, ApiError>>()?,
                            }),
                            None => None,
                        };
                        Generated::Token {
                            id,
                            text: piece.text,
                            special: special.contains(&id),
                            logprobs,
                        }
                    }
                    // The final flush of an incomplete character: its text joins the end.
                    None => Generated::Token {
                        id: u32::MAX,
                        text: piece.text,
                        special: false,
                        logprobs: None,
                    },
                };
                if sender.send(event).is_err() {
                    return Ok(()); // the client went away
                }
                stopped_by = stops
                    .iter()
                    .find(|stop| text.ends_with(stop.as_str()))
                    .cloned();
                if stopped_by.is_some() {
                    break; // dropping the stream ends the generation
                }
            }
            let finish_reason = if stopped_by.is_some() && max_new_tokens == Some(generated_tokens)
            {
                stopped_by = None;
                "length"
            } else if last.is_some_and(|id| eos.contains(&id)) {
                stopped_by = None;
                "eos_token"
            } else if stopped_by.is_some() {
                "stop_sequence"
            } else {
                "length"
            };
            let timings = Timings {
                queue: began - enqueued,
                inference: began.elapsed(),
                tokens: input_length,
                ..Timings::default()
            };
            let _ = sender.send(Generated::Done(End {
                text,
                finish_reason,
                stop: stopped_by,
                generated_tokens,
                input_length,
                timings,
            }));
            Ok(())
        })();
        if let Err(error) = result {
            let _ = sender.send(Generated::Failed(error));
        }
        Ok(Value::Null)
    });
    state.submit(
        Job::Run {
            work,
            inputs: 1,
            tokens: input_length,
            enqueued: Instant::now(),
            reply,
        },
        1,
    )?;
    Ok(Running {
        events,
        _reply: answer,
        _admission: admission,
    })
}

/// A token event, with the flush (`u32::MAX`) folded into the token before it.
#[derive(Debug, Clone)]
struct Token {
    id: u32,
    text: String,
    special: bool,
    logprobs: Option<Logprobs>,
}

/// The end of a generation.
#[derive(Debug)]
struct End {
    /// All the new text.
    text: String,
    /// TGI's `length`, `eos_token` or `stop_sequence`.
    finish_reason: &'static str,
    /// The stop sequence the text ends with, when that is why it stopped.
    stop: Option<String>,
    generated_tokens: usize,
    /// The prompt's tokens.
    input_length: usize,
    timings: Timings,
}

/// Collects a generation: its tokens (the flush appended to the last), then the end.
async fn collect(mut running: Running) -> Result<(Vec<Token>, End), ApiError> {
    let mut tokens: Vec<Token> = Vec::new();
    while let Some(event) = running.events.recv().await {
        match event {
            Generated::Token {
                id,
                text,
                special,
                logprobs,
            } => {
                if id == u32::MAX {
                    if let Some(last) = tokens.last_mut() {
                        last.text.push_str(&text);
                    }
                } else {
                    tokens.push(Token {
                        id,
                        text,
                        special,
                        logprobs,
                    });
                }
            }
            Generated::Done(end) => return Ok((tokens, end)),
            Generated::Failed(error) => return Err(error),
        }
    }
    Err(ApiError::backend(
        "the generation stopped without an answer",
    ))
}

/// TGI's `--max-top-n-tokens` default.
const MAX_TOP_N_TOKENS: usize = 5;

/// What TGI's parameters ask for besides the pipeline's options.
#[derive(Debug, Default)]
struct TgiAsks {
    /// `details`.
    details: bool,
    /// `return_full_text`.
    full_text: bool,
    /// `top_n_tokens`: the most likely tokens of each step, in `top_tokens`.
    top_n_tokens: usize,
}

/// TGI's parameters, mapped onto the pipeline's options.
fn tgi_options(parameters: &Map<String, Value>) -> Result<(Map<String, Value>, TgiAsks), ApiError> {
    let mut options = Map::new();
    let mut asks = TgiAsks::default();
    let mut sampling_asked = false;
    for (key, value) in parameters {
        match (key.as_str(), value) {
            (_, Value::Null) => {}
            ("details", value) => asks.details = value.as_bool().unwrap_or(false),
            ("return_full_text", value) => asks.full_text = value.as_bool().unwrap_or(false),
            ("top_n_tokens", value) => {
                asks.top_n_tokens = value
                    .as_u64()
                    .map(|top| top as usize)
                    .filter(|&top| top <= MAX_TOP_N_TOKENS)
                    .ok_or_else(|| {
                        ApiError::validation(format!(
                            "`top_n_tokens` must be an integer from 0 to {MAX_TOP_N_TOKENS}"
                        ))
                    })?;
            }
            ("watermark" | "decoder_input_details", Value::Bool(false)) => {}
            ("best_of", value) if value.as_u64() == Some(1) => {}
            // Read by `stop_sequences`.
            ("stop", _) => {}
            ("temperature" | "top_k" | "top_p" | "typical_p", value) => {
                sampling_asked = true;
                options.insert(key.clone(), value.clone());
            }
            ("max_new_tokens" | "do_sample" | "repetition_penalty" | "seed", value) => {
                options.insert(key.clone(), value.clone());
            }
            (other, _) => {
                return Err(ApiError::validation(format!(
                    "parameter `{other}` is not supported"
                )));
            }
        }
    }
    // TGI samples when a sampling parameter is given.
    if sampling_asked && !options.contains_key("do_sample") {
        options.insert("do_sample".to_string(), Value::Bool(true));
    }
    Ok((options, asks))
}

/// TGI's request body.
#[derive(Debug, Deserialize)]
pub(crate) struct GenerateRequest {
    inputs: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// TGI's `Token`; `logprob` is null when it was not computed.
fn token_json(token: &Token) -> Value {
    let logprob = token.logprobs.as_ref().map(|logprobs| logprobs.logprob);
    json!({"id": token.id, "text": token.text, "logprob": logprob, "special": token.special})
}

/// TGI's `top_tokens` of one token: its step's most likely tokens, best first.
fn top_tokens_json(token: &Token) -> Value {
    let top = token
        .logprobs
        .as_ref()
        .map_or(&[][..], |logprobs| &logprobs.top[..]);
    top.iter()
        .map(|top| {
            json!({"id": top.id, "text": top.text, "logprob": top.logprob, "special": top.special})
        })
        .collect()
}

/// `POST /generate`: `{"generated_text", "details"?}`.
pub(crate) async fn generate(
    State(state): State<SharedState>,
    body: Result<JsonBody<GenerateRequest>, ApiError>,
) -> Response {
    tracked(&state, Method::Single, async {
        let JsonBody(request) = body?;
        let (options, asks) = tgi_options(&request.parameters)?;
        let stops = stop_sequences(request.parameters.get("stop"))?;
        // TGI's details carry each token's log-probability.
        let logprobs = (asks.details || asks.top_n_tokens > 0).then_some(asks.top_n_tokens);
        let running = start(
            &state,
            "/generate",
            request.inputs.clone(),
            options,
            stops,
            logprobs,
        )
        .await?;
        let (tokens, end) = collect(running).await?;
        let timings = end.timings;
        // TGI keeps the stop sequence in the text.
        let generated_text = if asks.full_text {
            format!("{}{}", request.inputs, end.text)
        } else {
            end.text
        };
        let mut body = json!({"generated_text": generated_text});
        if asks.details {
            body["details"] = json!({
                "finish_reason": end.finish_reason,
                "generated_tokens": tokens.len(),
                "seed": request.parameters.get("seed").cloned().unwrap_or(Value::Null),
                "prefill": [],
                "tokens": tokens.iter().map(token_json).collect::<Vec<_>>(),
            });
            // TGI leaves `top_tokens` out when none were asked for.
            if asks.top_n_tokens > 0 {
                body["details"]["top_tokens"] =
                    tokens.iter().map(top_tokens_json).collect::<Value>();
            }
        }
        Ok((Json(body).into_response(), timings))
    })
    .await
}

/// The events of a running generation, one per token; the flush text joins the last token.
/// Each item is a token, or the end (with the full text), or an error.
fn token_stream(running: Running) -> impl Stream<Item = Result<(Token, Option<End>), ApiError>> {
    // Hold one token back so that the last one can carry the end.
    stream::unfold(
        (running, None::<Token>, false),
        |(mut running, mut held, finished)| async move {
            if finished {
                return None;
            }
            loop {
                match running.events.recv().await {
                    Some(Generated::Token {
                        id,
                        text,
                        special,
                        logprobs,
                    }) => {
                        if id == u32::MAX {
                            if let Some(last) = held.as_mut() {
                                last.text.push_str(&text);
                            }
                            continue;
                        }
                        let token = Token {
                            id,
                            text,
                            special,
                            logprobs,
                        };
                        if let Some(previous) = held.replace(token) {
                            return Some((Ok((previous, None)), (running, held, false)));
                        }
                    }
                    Some(Generated::Done(end)) => {
                        let last = held.take().unwrap_or(Token {
                            id: 0,
                            text: String::new(),
                            special: false,
                            logprobs: None,
                        });
                        return Some((Ok((last, Some(end))), (running, None, true)));
                    }
                    Some(Generated::Failed(error)) => {
                        return Some((Err(error), (running, None, true)));
                    }
                    None => {
                        let error = ApiError::backend("the generation stopped without an answer");
                        return Some((Err(error), (running, None, true)));
                    }
                }
            }
        },
    )
}

fn error_event(error: &ApiError) -> Event {
    Event::default().data(error.body().to_string())
}

/// `POST /generate_stream`: server-sent events, TGI's `StreamResponse` per token.
pub(crate) async fn generate_stream(
    State(state): State<SharedState>,
    body: Result<JsonBody<GenerateRequest>, ApiError>,
) -> Response {
    state.metrics.request(Method::Single);
    let started = async {
        let JsonBody(request) = body?;
        let (options, asks) = tgi_options(&request.parameters)?;
        let stops = stop_sequences(request.parameters.get("stop"))?;
        let seed = request
            .parameters
            .get("seed")
            .cloned()
            .unwrap_or(Value::Null);
        // TGI's stream gives every token's log-probability.
        let running = start(
            &state,
            "/generate_stream",
            request.inputs.clone(),
            options,
            stops,
            Some(asks.top_n_tokens),
        )
        .await?;
        Ok::<_, ApiError>((running, request.inputs, asks, seed))
    }
    .await;
    let (running, prompt, asks, seed) = match started {
        Ok(started) => started,
        Err(error) => {
            state.metrics.failure(error.metric_label());
            return error.into_response();
        }
    };
    let metrics = state.metrics.clone();
    let begun = Instant::now();
    let mut index = 0usize;
    let events = token_stream(running).map(move |item| {
        let event = match item {
            Ok((token, end)) => {
                index += 1;
                let (generated_text, details) = match end {
                    Some(end) => {
                        metrics.success(
                            Method::Single,
                            begun.elapsed(),
                            Duration::ZERO,
                            end.timings.queue,
                            end.timings.inference,
                        );
                        let text = if asks.full_text {
                            format!("{prompt}{}", end.text)
                        } else {
                            end.text
                        };
                        (
                            Value::String(text),
                            json!({
                                "finish_reason": end.finish_reason,
                                "generated_tokens": end.generated_tokens,
                                "seed": seed,
                                "input_length": end.input_length,
                            }),
                        )
                    }
                    None => (Value::Null, Value::Null),
                };
                let mut event = json!({
                    "index": index,
                    "token": token_json(&token),
                    "generated_text": generated_text,
                    "details": details,
                });
                // TGI leaves `top_tokens` out when none were asked for.
                if asks.top_n_tokens > 0 {
                    event["top_tokens"] = top_tokens_json(&token);
                }
                Event::default().data(event.to_string())
            }
            Err(error) => {
                metrics.failure(error.metric_label());
                error_event(&error)
            }
        };
        Ok::<_, Infallible>(event)
    });
    Sse::new(events).into_response()
}

/// A prompt or a list of one (OpenAI's `prompt`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Prompt {
    Single(String),
    Batch(Vec<String>),
}

/// OpenAI's `/v1/completions` body.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: Prompt,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    echo: bool,
    /// How many of the most likely tokens to give with each token's log-probability.
    #[serde(default)]
    logprobs: Option<usize>,
}

/// OpenAI's most `logprobs` (the legacy completions API's limit).
const MAX_LOGPROBS: usize = 5;

/// A completion request's prompt, pipeline options and stop sequences.
type CompletionParts = (String, Map<String, Value>, Vec<String>);

impl CompletionRequest {
    /// The prompt, the pipeline options and the stop sequences.
    fn options(&self) -> Result<CompletionParts, ApiError> {
        if self.logprobs.is_some_and(|top| top > MAX_LOGPROBS) {
            return Err(ApiError::validation(format!(
                "`logprobs` must be at most {MAX_LOGPROBS}"
            )));
        }
        let prompt = match &self.prompt {
            Prompt::Single(prompt) => prompt.clone(),
            Prompt::Batch(prompts) if prompts.len() == 1 => prompts[0].clone(),
            Prompt::Batch(_) => {
                return Err(ApiError::validation(
                    "only one prompt per request is supported",
                ));
            }
        };
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::validation("only `n: 1` is supported"));
        }
        if self.echo {
            return Err(ApiError::validation("`echo` is not supported"));
        }
        let stops = stop_sequences(self.stop.as_ref())?;
        let mut options = Map::new();
        // OpenAI's default is 16 new tokens.
        options.insert(
            "max_new_tokens".into(),
            json!(self.max_tokens.unwrap_or(16)),
        );
        match self.temperature {
            Some(temperature) if temperature > 0.0 => {
                options.insert("do_sample".into(), json!(true));
                options.insert("temperature".into(), json!(temperature));
            }
            Some(_) => {
                options.insert("do_sample".into(), json!(false));
            }
            None => {}
        }
        if let Some(top_p) = self.top_p {
            options.insert("do_sample".into(), json!(true));
            options.insert("top_p".into(), json!(top_p));
        }
        if let Some(seed) = self.seed {
            options.insert("seed".into(), json!(seed));
        }
        Ok((prompt, options, stops))
    }
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// OpenAI's `finish_reason`: `stop` for an end-of-sequence token or a stop sequence.
fn openai_reason(finish_reason: &str) -> &'static str {
    if finish_reason == "length" {
        "length"
    } else {
        "stop"
    }
}

/// OpenAI's `logprobs` of some tokens whose text starts `offset` characters into the prompt
/// and completion: each token's text, log-probability, and the `top` most likely tokens of its
/// step with the token itself (at most `top + 1`, as OpenAI's), by their texts.
fn openai_logprobs(tokens: &[Token], mut offset: usize) -> Value {
    let mut texts = Vec::with_capacity(tokens.len());
    let mut values = Vec::with_capacity(tokens.len());
    let mut tops = Vec::with_capacity(tokens.len());
    let mut offsets = Vec::with_capacity(tokens.len());
    for token in tokens {
        texts.push(Value::from(token.text.as_str()));
        offsets.push(offset);
        offset += token.text.chars().count();
        let Some(logprobs) = &token.logprobs else {
            values.push(Value::Null);
            tops.push(Value::Null);
            continue;
        };
        values.push(json!(logprobs.logprob));
        let mut top = Map::new();
        for (text, logprob) in logprobs
            .top
            .iter()
            .map(|top| (&top.text, &top.logprob))
            .chain([(&logprobs.text, &logprobs.logprob)])
        {
            // Best first: a text that two tokens decode to keeps the likelier.
            top.entry(text.clone()).or_insert_with(|| json!(logprob));
        }
        tops.push(Value::Object(top));
    }
    json!({
        "tokens": texts,
        "token_logprobs": values,
        "top_logprobs": tops,
        "text_offset": offsets,
    })
}

/// OpenAI's text: without the stop sequence that ended it.
fn openai_text(end: &End) -> &str {
    match &end.stop {
        Some(stop) => &end.text[..end.text.len() - stop.len()],
        None => &end.text,
    }
}

/// The streamed text of an OpenAI completion: a stop sequence is not sent, so text that may
/// be the start of one is held back until the next token says whether it is.
struct HeldBack {
    stops: Vec<String>,
    /// All the new text so far, and how much of it was sent.
    text: String,
    sent: usize,
}

impl HeldBack {
    /// The text to send after `piece`: up to the longest end of the text that begins a stop
    /// sequence.
    fn push(&mut self, piece: &str) -> String {
        self.text.push_str(piece);
        let held = self
            .text
            .char_indices()
            .map(|(index, _)| index)
            .filter(|&index| index >= self.sent)
            .find(|&index| {
                let rest = &self.text[index..];
                self.stops.iter().any(|stop| stop.starts_with(rest))
            })
            .unwrap_or(self.text.len());
        let out = self.text[self.sent..held].to_string();
        self.sent = held;
        out
    }

    /// The rest of the text at the end.
    fn finish(&mut self, end: &End) -> String {
        let text = openai_text(end);
        let out = text.get(self.sent..).unwrap_or_default().to_string();
        self.sent = self.text.len();
        out
    }
}

/// Starts a completion's generation: the running job, the stop sequences and the prompt's
/// length in characters (where the first generated token's `text_offset` is).
async fn start_completion(
    state: &SharedState,
    request: &CompletionRequest,
) -> Result<(Running, Vec<String>, usize), ApiError> {
    let (prompt, options, stops) = request.options()?;
    let prompt_chars = prompt.chars().count();
    let running = start(
        state,
        "/v1/completions",
        prompt,
        options,
        stops.clone(),
        request.logprobs,
    )
    .await?;
    Ok((running, stops, prompt_chars))
}

/// `POST /v1/completions`: OpenAI's `text_completion`, or its chunks as server-sent events
/// ending with `data: [DONE]`.
pub(crate) async fn completions(
    State(state): State<SharedState>,
    body: Result<JsonBody<CompletionRequest>, ApiError>,
) -> Response {
    let request = match body {
        Ok(JsonBody(request)) => request,
        Err(error) => {
            state.metrics.request(Method::Single);
            state.metrics.failure(error.metric_label());
            return error.openai_response();
        }
    };
    let model_name = request.model.clone().unwrap_or_else(|| {
        state
            .ready()
            .map(|model| model.model_id.clone())
            .unwrap_or_default()
    });
    let id = format!("cmpl-{}", unix_time());
    let created = unix_time();
    if !request.stream {
        return tracked_as(&state, Method::Single, true, async {
            let (running, _, prompt_chars) = start_completion(&state, &request).await?;
            let (tokens, end) = collect(running).await?;
            let logprobs = match request.logprobs {
                Some(_) => openai_logprobs(&tokens, prompt_chars),
                None => Value::Null,
            };
            let prompt_tokens = end.input_length;
            let timings = end.timings;
            let body = json!({
                "id": id,
                "object": "text_completion",
                "created": created,
                "model": model_name,
                "choices": [{
                    "text": openai_text(&end),
                    "index": 0,
                    "logprobs": logprobs,
                    "finish_reason": openai_reason(end.finish_reason),
                }],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": tokens.len(),
                    "total_tokens": prompt_tokens + tokens.len(),
                },
            });
            Ok((Json(body).into_response(), timings))
        })
        .await;
    }
    state.metrics.request(Method::Single);
    let (running, stops, mut offset) = match start_completion(&state, &request).await {
        Ok(running) => running,
        Err(error) => {
            state.metrics.failure(error.metric_label());
            return error.openai_response();
        }
    };
    let metrics = state.metrics.clone();
    let begun = Instant::now();
    let mut held_back = HeldBack {
        stops,
        text: String::new(),
        sent: 0,
    };
    let chunks = token_stream(running).map(move |item| {
        let event = match item {
            Ok((token, end)) => {
                // Each chunk carries its token's log-probabilities.
                let logprobs = match request.logprobs {
                    Some(_) => openai_logprobs(std::slice::from_ref(&token), offset),
                    None => Value::Null,
                };
                offset += token.text.chars().count();
                let mut text = held_back.push(&token.text);
                let finish_reason = match end {
                    Some(end) => {
                        metrics.success(
                            Method::Single,
                            begun.elapsed(),
                            Duration::ZERO,
                            end.timings.queue,
                            end.timings.inference,
                        );
                        text.push_str(&held_back.finish(&end));
                        Value::from(openai_reason(end.finish_reason))
                    }
                    None => Value::Null,
                };
                Event::default().data(
                    json!({
                        "id": id,
                        "object": "text_completion",
                        "created": created,
                        "model": model_name,
                        "choices": [{
                            "text": text,
                            "index": 0,
                            "logprobs": logprobs,
                            "finish_reason": finish_reason,
                        }],
                    })
                    .to_string(),
                )
            }
            Err(error) => {
                metrics.failure(error.metric_label());
                error_event(&error)
            }
        };
        Ok::<_, Infallible>(event)
    });
    let done = stream::once(async { Ok::<_, Infallible>(Event::default().data("[DONE]")) });
    Sse::new(chunks.chain(done)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(text: &str, stop: Option<&str>) -> End {
        End {
            text: text.to_string(),
            finish_reason: if stop.is_some() {
                "stop_sequence"
            } else {
                "length"
            },
            stop: stop.map(str::to_string),
            generated_tokens: 0,
            input_length: 0,
            timings: Timings::default(),
        }
    }

    /// Streams `pieces` through a [`HeldBack`]: what each piece sends, then the rest at `end`.
    fn stream(stops: &[&str], pieces: &[&str], stop: Option<&str>) -> Vec<String> {
        let mut held = HeldBack {
            stops: stops.iter().map(|stop| stop.to_string()).collect(),
            text: String::new(),
            sent: 0,
        };
        let mut sent: Vec<String> = pieces.iter().map(|piece| held.push(piece)).collect();
        let text: String = pieces.concat();
        sent.push(held.finish(&end(&text, stop)));
        sent
    }

    #[test]
    fn the_stream_never_sends_a_stop_sequence() {
        // A stop across two pieces: its start is held, then dropped.
        assert_eq!(stream(&["ab"], &["xa", "b"], Some("ab")), ["x", "", ""]);
        // A start that turns out not to be one is sent with the next piece.
        assert_eq!(stream(&["ab"], &["xa", "c"], None), ["x", "ac", ""]);
        // Held at the end without a stop: sent by finish.
        assert_eq!(stream(&["ab"], &["xa"], None), ["x", "a"]);
        // Multi-byte characters are cut on their boundaries only.
        assert_eq!(
            stream(&["é!", "zz"], &["caf", "é", "!"], Some("é!")),
            ["caf", "", "", ""]
        );
        assert_eq!(stream(&["é!"], &["café", " ok"], None), ["caf", "é ok", ""]);
        // No stops: everything at once.
        assert_eq!(stream(&[], &["a", "b"], None), ["a", "b", ""]);
    }

    #[test]
    fn stop_sequences_are_checked_as_tgi_checks_them() {
        assert_eq!(stop_sequences(None).unwrap(), Vec::<String>::new());
        assert_eq!(stop_sequences(Some(&json!("\n"))).unwrap(), ["\n"]);
        assert_eq!(
            stop_sequences(Some(&json!(["a", "b"]))).unwrap(),
            ["a", "b"]
        );
        for bad in [
            json!(["a", "b", "c", "d", "e"]),
            json!([""]),
            json!([1]),
            json!(3),
        ] {
            let error = stop_sequences(Some(&bad)).unwrap_err();
            assert_eq!(error.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        }
        assert_eq!(openai_text(&end("hello.\n", Some(".\n"))), "hello");
        assert_eq!(openai_text(&end("hello", None)), "hello");
        assert_eq!(openai_reason("stop_sequence"), "stop");
        assert_eq!(openai_reason("eos_token"), "stop");
        assert_eq!(openai_reason("length"), "length");
    }
}
