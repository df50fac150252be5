//! Edit jobs as submitted by users, and their validation.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SCHEMA_VERSION;

/// Why a job (or another document) was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValidationError {
    /// Not valid JSON/TOML for the schema.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Document kind.
        what: &'static str,
        /// Parser message.
        reason: String,
    },
    /// A field has an unacceptable value.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// Field path.
        field: &'static str,
        /// The rule broken.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ValidationError {
    ValidationError::Invalid { field, reason: reason.into() }
}

/// Where a job's input images are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InputSpec {
    /// Every object under this key prefix.
    Prefix(String),
    /// Exactly these keys.
    Manifest(Vec<String>),
}

/// What the edit optimises for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GuidanceSpec {
    /// Make the model's guidance classifier predict this class (by name, e.g. "coat").
    Class(String),
    /// Move the image towards a text prompt with CLIP (e.g. "a smiling face"); the workers need
    /// a CLIP checkpoint (`[models.clip]`).
    Text(String),
}

/// A global semantic direction: one control sequence shared by a set of images (paper §4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DirectionSpec {
    /// Learn one control sequence shared by all the job's inputs (one task: at most
    /// [`MAX_BATCH`] images, `batch_size` unused), write the inputs edited with it, and store it
    /// at this key (safetensors, with the parameters it was learned with).
    Learn(String),
    /// Edit every input with the direction stored at this key: encode, then decode with its
    /// controls and its own trajectory parameters (no optimisation; `params` unused). The job's
    /// guidance is what the reported scores measure.
    Apply(String),
}

impl DirectionSpec {
    /// The direction's object key.
    pub fn key(&self) -> &str {
        match self {
            Self::Learn(key) | Self::Apply(key) => key,
        }
    }
}

/// The longest text prompt accepted, in bytes (CLIP's 77-token context is checked by the model).
pub const MAX_PROMPT_BYTES: usize = 1000;

/// An edit job: inputs, outputs, model, guidance and FlowGrad parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Schema version (must be [`SCHEMA_VERSION`]).
    pub schema: u32,
    /// Idempotency key: resubmitting the same id is a no-op.
    pub job_id: Uuid,
    /// Input images.
    pub input: InputSpec,
    /// Prefix under which edited images are written, mirroring input names (as PNG).
    pub output_prefix: String,
    /// Model name from the worker's registry (e.g. "fashion-mnist").
    pub model: String,
    /// Edit target.
    pub guidance: GuidanceSpec,
    /// FlowGrad parameters (`EditParams::default()` for omitted fields).
    #[serde(default)]
    pub params: flowgrad_params::EditParams,
    /// Seed of all randomness; with the task id it makes every task reproducible.
    #[serde(default)]
    pub seed: u64,
    /// Images per task (default [`DEFAULT_BATCH_SIZE`]).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Learn or apply a global direction instead of editing each image on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<DirectionSpec>,
}

/// Images per task when a job does not say: one, so each image gets its own grid and task.
pub const DEFAULT_BATCH_SIZE: usize = 1;

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

/// The largest batch a task may carry.
pub const MAX_BATCH: usize = 64;

/// Top-level folders the fleet keeps its own records in; no input or output may live there.
pub const RESERVED_PREFIXES: [&str; 2] = ["jobs", "active"];

/// The longest object key (S3's limit), in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The most keys a manifest may list (larger jobs use a prefix).
pub const MAX_MANIFEST_KEYS: usize = 100_000;

/// The longest model or class name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// The most Euler steps or iterations a job may ask for.
pub const MAX_STEPS: usize = 10_000;

impl JobSpec {
    /// A job of the current schema editing `input` into `output_prefix` with `model` towards
    /// `guidance`, a fresh id and every other field at its default (as a job file leaving them
    /// out): `EditParams::default()`, seed 0, one image per task, no direction.
    pub fn new(input: InputSpec, output_prefix: &str, model: &str, guidance: GuidanceSpec) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            job_id: Uuid::new_v4(),
            input,
            output_prefix: output_prefix.into(),
            model: model.into(),
            guidance,
            params: flowgrad_params::EditParams::default(),
            seed: 0,
            batch_size: DEFAULT_BATCH_SIZE,
            direction: None,
        }
    }

    /// Parses and validates a job file as users write them (TOML, or JSON when `json`): fills
    /// `schema` and a fresh `job_id` when absent; `params` left out take `EditParams::default()`.
    pub fn from_job_file(text: &str, json: bool) -> Result<Self, ValidationError> {
        let malformed = |reason: String| ValidationError::Malformed { what: "job file", reason };
        let mut value: serde_json::Value = if json {
            serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| malformed(e.to_string()))?
        };
        let object = value.as_object_mut().ok_or_else(|| malformed("a job must be a table/object".into()))?;
        object.entry("schema").or_insert(SCHEMA_VERSION.into());
        object.entry("job_id").or_insert_with(|| uuid::Uuid::new_v4().to_string().into());
        Self::from_value(value, "job file")
    }

    /// Parses and validates a job from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ValidationError::Malformed { what: "job", reason: e.to_string() })?;
        Self::from_value(value, "job")
    }

    /// A job from its parsed document: the schema version is checked first (a job of another
    /// version fails on that, not on a field it lacks), and a bad field is named by its path
    /// (`params.steps: invalid value: integer `-5`, expected usize`).
    fn from_value(value: serde_json::Value, what: &'static str) -> Result<Self, ValidationError> {
        if let Some(schema) = value.get("schema")
            && schema.as_u64() != Some(u64::from(SCHEMA_VERSION))
        {
            return Err(invalid(
                "schema",
                format!("version {schema} is not supported: this flowgrad reads job schema version {SCHEMA_VERSION}"),
            ));
        }
        let job: Self = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let reason = if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) };
            ValidationError::Malformed { what, reason }
        })?;
        job.validate()?;
        Ok(job)
    }

    /// Checks every field that can be checked without the model registry or storage.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.schema != SCHEMA_VERSION {
            return Err(invalid(
                "schema",
                format!("version {} is not supported (expected {SCHEMA_VERSION})", self.schema),
            ));
        }
        if self.job_id.is_nil() {
            return Err(invalid("job_id", "must not be the nil UUID"));
        }
        validate_prefix("output_prefix", &self.output_prefix)?;
        match &self.input {
            InputSpec::Prefix(prefix) => {
                validate_prefix("input.prefix", prefix)?;
                if self.output_prefix.starts_with(prefix.as_str()) || prefix.starts_with(self.output_prefix.as_str()) {
                    return Err(invalid(
                        "output_prefix",
                        format!("`{}` overlaps the input prefix `{prefix}`", self.output_prefix),
                    ));
                }
            }
            InputSpec::Manifest(keys) => {
                if keys.is_empty() {
                    return Err(invalid("input.manifest", "lists no keys"));
                }
                if keys.len() > MAX_MANIFEST_KEYS {
                    return Err(invalid(
                        "input.manifest",
                        format!("lists {} keys; at most {MAX_MANIFEST_KEYS} (use an input prefix)", keys.len()),
                    ));
                }
                for key in keys {
                    validate_key("input.manifest", key)?;
                }
                let mut sorted = keys.clone();
                sorted.sort();
                if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                    return Err(invalid("input.manifest", format!("lists `{}` twice", w[0])));
                }
            }
        }
        validate_name("model", &self.model)?;
        match &self.guidance {
            GuidanceSpec::Class(class) => validate_name("guidance.class", class)?,
            GuidanceSpec::Text(prompt) if prompt.trim().is_empty() => {
                return Err(invalid("guidance.text", "must not be empty"));
            }
            GuidanceSpec::Text(prompt) if prompt.len() > MAX_PROMPT_BYTES => {
                return Err(invalid(
                    "guidance.text",
                    format!("is {} bytes long; at most {MAX_PROMPT_BYTES}", prompt.len()),
                ));
            }
            GuidanceSpec::Text(_) => {}
        }
        for (field, value) in [("params.steps", self.params.steps), ("params.iterations", self.params.iterations)] {
            if value > MAX_STEPS {
                return Err(invalid(field, format!("{value} is above the limit of {MAX_STEPS}")));
            }
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return Err(invalid("batch_size", format!("must be 1..={MAX_BATCH}, got {}", self.batch_size)));
        }
        if let Some(direction) = &self.direction {
            self.validate_direction(direction)?;
        }
        self.params.validate().map_err(|e| invalid("params", e.to_string()))
    }
}

impl JobSpec {
    fn validate_direction(&self, direction: &DirectionSpec) -> Result<(), ValidationError> {
        let key = direction.key();
        validate_key("direction", key)?;
        if let InputSpec::Prefix(prefix) = &self.input
            && key.starts_with(prefix.as_str())
        {
            return Err(invalid("direction", format!("`{key}` lies under the input prefix `{prefix}`")));
        }
        if let (DirectionSpec::Learn(_), InputSpec::Manifest(keys)) = (direction, &self.input)
            && keys.len() > MAX_BATCH
        {
            return Err(invalid(
                "direction",
                format!(
                    "learning a direction takes at most {MAX_BATCH} images (one batch); the manifest lists {}",
                    keys.len()
                ),
            ));
        }
        Ok(())
    }
}

fn validate_prefix(field: &'static str, prefix: &str) -> Result<(), ValidationError> {
    if prefix.is_empty() || !prefix.ends_with('/') {
        return Err(invalid(field, format!("`{prefix}` must be non-empty and end with '/'")));
    }
    validate_key(field, prefix.trim_end_matches('/'))
}

fn validate_name(field: &'static str, name: &str) -> Result<(), ValidationError> {
    if name.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(field, format!("is {} bytes long; at most {MAX_NAME_BYTES}", name.len())));
    }
    Ok(())
}

fn validate_key(field: &'static str, key: &str) -> Result<(), ValidationError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(field, format!("a key of {} bytes is longer than S3's {MAX_KEY_BYTES}", key.len())));
    }
    let reserved = key.split('/').next().is_some_and(|top| RESERVED_PREFIXES.contains(&top));
    if key.is_empty()
        || key.starts_with('/')
        || key.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        || reserved
    {
        return Err(invalid(
            field,
            format!(
                "`{key}` is not a valid object key (no leading '/', empty, '.' or '..' segments, nor under the fleet's own jobs/ or active/)"
            ),
        ));
    }
    Ok(())
}
