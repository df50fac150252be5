//! Reading NCSN++ weights: RectifiedFlow's PyTorch checkpoints (`{'model', 'ema', …}`, keys
//! prefixed `module.`, EMA weights as `ema.shadow_params`, a list in `named_parameters()` order
//! of the parameters that require grad) and safetensors state dicts; writing safetensors.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use burn::tensor::{DType, TensorData};
use burn_store::pytorch::lazy_data::LazyDataSource;
use burn_store::pytorch::pickle_reader::{Object, read_pickle_with_data};
use safetensors::{Dtype, SafeTensors};

use super::NcsnppError;
use super::model::SIGMAS;
use super::state_dict::{HostParam, StateDict};

/// Which weights of a training checkpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsChoice {
    /// The exponential moving average (`ema.shadow_params`), what RectifiedFlow samples with.
    #[default]
    Ema,
    /// The raw training weights (`model`).
    Model,
}

impl std::str::FromStr for WeightsChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ema" => Ok(Self::Ema),
            "model" => Ok(Self::Model),
            other => Err(format!("`{other}` is neither `ema` nor `model`")),
        }
    }
}

/// Reads `path` by content: a safetensors state dict, or a PyTorch zip checkpoint (`.pth`).
/// `choice` applies to PyTorch training checkpoints; a safetensors file has one set of weights.
pub fn read_weights(path: &Path, choice: WeightsChoice) -> Result<StateDict, NcsnppError> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|source| io_error(path, source))?;
    let n = file.read(&mut magic).map_err(|source| io_error(path, source))?;
    if n == 4 && magic == *b"PK\x03\x04" { read_pytorch(path, choice) } else { read_safetensors(path) }
}

/// Reads a safetensors state dict (F32, F64, F16 or BF16), dropping a `module.` prefix.
pub fn read_safetensors(path: &Path) -> Result<StateDict, NcsnppError> {
    let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
    let file =
        SafeTensors::deserialize(&bytes).map_err(|e| format_error(path, format!("not a safetensors file: {e}")))?;
    let mut dict = StateDict::default();
    for (name, view) in file.tensors() {
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F64 => DType::F64,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => return Err(format_error(path, format!("{name}: unsupported dtype {other:?}"))),
        };
        let data = TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
        dict.tensors.insert(name, host_param(data).map_err(|e| format_error(path, e))?);
    }
    Ok(dict.strip_data_parallel_prefix())
}

/// Writes `dict` as a safetensors file of f32 tensors under its keys.
pub fn write_safetensors(dict: &StateDict, path: &Path) -> Result<(), NcsnppError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = dict
        .tensors
        .iter()
        .map(|(k, p)| (k.clone(), p.values.iter().flat_map(|v| v.to_le_bytes()).collect(), p.shape.clone()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, b, s)| {
            Ok((
                k.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                    .map_err(|e| format_error(path, e.to_string()))?,
            ))
        })
        .collect::<Result<_, NcsnppError>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| format_error(path, format!("cannot write: {e}")))
}

/// Reads a RectifiedFlow training checkpoint saved by `torch.save` (zip format, torch ≥ 1.6).
///
/// [`WeightsChoice::Model`] takes `model` (or the whole file when it is a bare state dict);
/// [`WeightsChoice::Ema`] takes `model` and replaces every parameter that requires grad by the
/// matching entry of `ema.shadow_params`, paired in [`ema_parameter_order`].
pub fn read_pytorch(path: &Path, choice: WeightsChoice) -> Result<StateDict, NcsnppError> {
    let top = read_pickle_tree(path)?;
    let Object::Dict(top) = top else {
        return Err(format_error(
            path,
            "the pickle is not a dict (a whole pickled model is not supported; save its state_dict)".into(),
        ));
    };
    let model = match top.get("model") {
        Some(Object::Dict(model)) => tensors_of(model, path)?,
        Some(_) => return Err(format_error(path, "`model` is not a state dict".into())),
        None if choice == WeightsChoice::Model => tensors_of(&top, path)?,
        None => {
            return Err(format_error(
                path,
                "no `model` / `ema` entries (a bare state dict: choose the `model` weights)".into(),
            ));
        }
    };
    let mut model = model.strip_data_parallel_prefix();
    if model.tensors.is_empty() {
        return Err(format_error(path, "no tensors found".into()));
    }
    if choice == WeightsChoice::Model {
        return Ok(model);
    }
    let shadow = match top.get("ema") {
        Some(Object::Dict(ema)) => match ema.get("shadow_params") {
            Some(Object::List(list)) => list,
            _ => return Err(format_error(path, "`ema` has no `shadow_params` list".into())),
        },
        _ => return Err(format_error(path, "no `ema` entry: choose the `model` weights".into())),
    };
    let order = ema_parameter_order(model.tensors.keys().map(String::as_str)).map_err(|e| format_error(path, e))?;
    if order.len() != shadow.len() {
        return Err(NcsnppError::EmaCount { path: path.to_path_buf(), parameters: order.len(), shadow: shadow.len() });
    }
    for (i, (name, object)) in order.iter().zip(shadow).enumerate() {
        let Object::TorchParam(snapshot) = object else {
            return Err(format_error(path, format!("ema.shadow_params[{i}] is not a tensor")));
        };
        let param = host_param(snapshot.to_data().map_err(|e| format_error(path, e.to_string()))?)
            .map_err(|e| format_error(path, e))?;
        let slot = model.tensors.get_mut(name).expect("order is built from these keys");
        if param.shape != slot.shape {
            return Err(NcsnppError::EmaShape {
                path: path.to_path_buf(),
                index: i,
                key: name.clone(),
                ema: param.shape,
                model: slot.shape.clone(),
            });
        }
        *slot = param;
    }
    Ok(model)
}

/// The keys among `keys` (a state dict without prefix) that are parameters requiring grad, in
/// PyTorch `named_parameters()` order: by module index, then by each module class's attribute
/// registration order (GroupNorm_0, Conv_0, Conv2d_0, Dense_0, GroupNorm_1, Conv_1, Conv_2,
/// NIN_0…3; weight/W before bias/b). Left out: the `sigmas` buffer and the Fourier `W`
/// (`all_modules.0.W`, created with `requires_grad=False`).
pub fn ema_parameter_order<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    const SUBMODULES: [&str; 11] = [
        "GroupNorm_0",
        "Conv_0",
        "Conv2d_0",
        "Dense_0",
        "GroupNorm_1",
        "Conv_1",
        "Conv_2",
        "NIN_0",
        "NIN_1",
        "NIN_2",
        "NIN_3",
    ];
    let rank_param = |p: &str| match p {
        "weight" | "W" => Some(0),
        "bias" | "b" => Some(1),
        _ => None,
    };
    let mut ranked = vec![];
    for key in keys {
        if key == SIGMAS || key == "all_modules.0.W" {
            continue;
        }
        let unknown = || format!("unexpected NCSN++ key `{key}`");
        let rest = key.strip_prefix("all_modules.").ok_or_else(unknown)?;
        let (index, rest) = rest.split_once('.').ok_or_else(unknown)?;
        let index: usize = index.parse().map_err(|_| unknown())?;
        let (sub, param) = match rest.split_once('.') {
            Some((sub, param)) => (1 + SUBMODULES.iter().position(|s| *s == sub).ok_or_else(unknown)?, param),
            None => (0, rest),
        };
        ranked.push(((index, sub, rank_param(param).ok_or_else(unknown)?), key.to_string()));
    }
    ranked.sort();
    Ok(ranked.into_iter().map(|(_, k)| k).collect())
}

/// Parses the pickle of a torch zip checkpoint with lazily readable tensor storages.
fn read_pickle_tree(path: &Path) -> Result<Object, NcsnppError> {
    let source =
        LazyDataSource::from_zip(path).map_err(|e| format_error(path, format!("not a PyTorch zip checkpoint: {e}")))?;
    // torch.save names every entry `<archive>/…`; the pickle is `<archive>/data.pkl`
    let prefix = source
        .keys()
        .into_iter()
        .find_map(|k| k.find("data/").map(|i| k[..i].to_string()))
        .unwrap_or_else(|| "archive/".to_string());
    let pickle = source
        .read(&format!("{prefix}data.pkl"))
        .map_err(|e| format_error(path, format!("no {prefix}data.pkl: {e}")))?;
    read_pickle_with_data(&mut BufReader::new(pickle.as_slice()), Arc::new(source))
        .map_err(|e| format_error(path, format!("cannot parse the pickle: {e}")))
}

/// The tensors of a state dict's pickle object (values that are not tensors are skipped).
fn tensors_of(dict: &HashMap<String, Object>, path: &Path) -> Result<StateDict, NcsnppError> {
    let mut out = StateDict::default();
    for (key, value) in dict {
        if let Object::TorchParam(snapshot) = value {
            let data = snapshot.to_data().map_err(|e| format_error(path, format!("{key}: {e}")))?;
            out.tensors.insert(key.clone(), host_param(data).map_err(|e| format_error(path, format!("{key}: {e}")))?);
        }
    }
    Ok(out)
}

fn host_param(data: TensorData) -> Result<HostParam, String> {
    let shape = data.shape.to_vec();
    let values = data.convert::<f32>().into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    Ok(HostParam { shape, values })
}

fn io_error(path: &Path, source: std::io::Error) -> NcsnppError {
    NcsnppError::Io { path: path.to_path_buf(), source }
}

fn format_error(path: &Path, reason: String) -> NcsnppError {
    NcsnppError::Format { path: path.to_path_buf(), reason }
}
