//! The key map from Hugging Face `CLIPModel` safetensors to OpenAI `state_dict` keys: renamed
//! tensors, q/k/v projections stacked into `in_proj_*`, and the two output projections
//! transposed (`[embed, width]` → `[width, embed]`).

use std::collections::BTreeMap;

use super::host::{CheckpointError, HostTensor};

/// Whole-key renames (`(hugging face, openai, transpose)`).
const FIXED: [(&str, &str, bool); 14] = [
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight", false),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding", false),
    ("text_model.final_layer_norm.weight", "ln_final.weight", false),
    ("text_model.final_layer_norm.bias", "ln_final.bias", false),
    ("text_projection.weight", "text_projection", true),
    ("vision_model.embeddings.class_embedding", "visual.class_embedding", false),
    ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight", false),
    ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding", false),
    ("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight", false),
    ("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias", false),
    ("vision_model.post_layernorm.weight", "visual.ln_post.weight", false),
    ("vision_model.post_layernorm.bias", "visual.ln_post.bias", false),
    ("visual_projection.weight", "visual.proj", true),
    ("logit_scale", "logit_scale", false),
];

/// Renames inside one transformer layer (`(hugging face, openai)` suffixes).
const LAYER: [(&str, &str); 10] = [
    ("self_attn.out_proj.weight", "attn.out_proj.weight"),
    ("self_attn.out_proj.bias", "attn.out_proj.bias"),
    ("layer_norm1.weight", "ln_1.weight"),
    ("layer_norm1.bias", "ln_1.bias"),
    ("layer_norm2.weight", "ln_2.weight"),
    ("layer_norm2.bias", "ln_2.bias"),
    ("mlp.fc1.weight", "mlp.c_fc.weight"),
    ("mlp.fc1.bias", "mlp.c_fc.bias"),
    ("mlp.fc2.weight", "mlp.c_proj.weight"),
    ("mlp.fc2.bias", "mlp.c_proj.bias"),
];

/// Tower prefixes (`(hugging face, openai)`).
const TOWERS: [(&str, &str); 2] = [
    ("text_model.encoder.layers.", "transformer.resblocks."),
    ("vision_model.encoder.layers.", "visual.transformer.resblocks."),
];

fn transpose(t: HostTensor) -> HostTensor {
    let [rows, cols] = [t.shape[0], t.shape[1]];
    let values = (0..cols).flat_map(|c| (0..rows).map(move |r| (r, c))).map(|(r, c)| t.values[r * cols + c]).collect();
    HostTensor { shape: vec![cols, rows], values }
}

/// Where one Hugging Face key goes.
enum Target {
    Plain(String, bool),
    /// Part `index` (q = 0, k = 1, v = 2) of the stacked `in_proj` tensor `key`.
    Stacked(String, usize),
}

fn target(key: &str) -> Option<Target> {
    if let Some((_, openai, transposed)) = FIXED.iter().find(|(hf, ..)| *hf == key) {
        return Some(Target::Plain(openai.to_string(), *transposed));
    }
    let (hf_prefix, openai_prefix) = TOWERS.iter().find(|(hf, _)| key.starts_with(hf))?;
    let rest = &key[hf_prefix.len()..];
    let (layer, suffix) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let base = format!("{openai_prefix}{layer}.");
    if let Some((_, openai)) = LAYER.iter().find(|(hf, _)| *hf == suffix) {
        return Some(Target::Plain(format!("{base}{openai}"), false));
    }
    let (projection, kind) = suffix.strip_prefix("self_attn.")?.split_once("_proj.")?;
    let index = ["q", "k", "v"].iter().position(|p| *p == projection)?;
    matches!(kind, "weight" | "bias").then(|| Target::Stacked(format!("{base}attn.in_proj_{kind}"), index))
}

/// Converts Hugging Face keys to OpenAI keys; each value keeps the file key(s) it came from.
pub(crate) fn to_openai(
    raw: BTreeMap<String, HostTensor>,
) -> Result<BTreeMap<String, (String, HostTensor)>, CheckpointError> {
    let mut out = BTreeMap::new();
    let mut stacked: BTreeMap<String, [Option<(String, HostTensor)>; 3]> = BTreeMap::new();
    let mut unexpected = vec![];
    for (key, tensor) in raw {
        match target(&key) {
            Some(Target::Plain(openai, transposed)) if !transposed || tensor.shape.len() == 2 => {
                out.insert(openai, (key, if transposed { transpose(tensor) } else { tensor }));
            }
            Some(Target::Stacked(openai, index)) => stacked.entry(openai).or_default()[index] = Some((key, tensor)),
            _ => unexpected.push(key),
        }
    }
    let mut missing = vec![];
    for (openai, parts) in stacked {
        if let [Some(q), Some(k), Some(v)] = parts {
            let file_key = format!("{}+k+v", q.0);
            let mut shape = q.1.shape.clone();
            shape[0] = q.1.shape[0] + k.1.shape[0] + v.1.shape[0];
            let values = [q.1.values, k.1.values, v.1.values].concat();
            out.insert(openai, (file_key, HostTensor { shape, values }));
        } else {
            missing.push(format!("{openai} (needs q_proj, k_proj and v_proj)"));
        }
    }
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(out);
    }
    Err(CheckpointError::Mismatch { missing, unexpected, misshaped: vec![] })
}
