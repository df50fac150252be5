//! The header of a stored global direction: the safetensors metadata entry that says a buffer is
//! a FlowGrad direction, with the parameters it was learned with and free-form labels. Readable
//! without tensors, so services can check a direction before a worker loads it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::EditParams;

/// Version of the serialised direction layout; bumped on incompatible changes.
pub const DIRECTION_FORMAT: u32 = 1;
/// Safetensors metadata key under which the header is stored as JSON.
pub const DIRECTION_METADATA_KEY: &str = "flowgrad.direction";

/// What a stored direction says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionHeader {
    /// Layout version, [`DIRECTION_FORMAT`] when written by this build.
    pub format: u32,
    /// The parameters of the trajectory the direction was learned on.
    pub params: EditParams,
    /// Free-form labels (model, guidance, origin).
    pub labels: BTreeMap<String, String>,
}

impl DirectionHeader {
    /// A header of the current format.
    pub fn new(params: EditParams, labels: BTreeMap<String, String>) -> Self {
        Self { format: DIRECTION_FORMAT, params, labels }
    }

    /// The safetensors metadata holding this header.
    pub fn metadata(&self) -> HashMap<String, String> {
        let json = serde_json::to_string(self).expect("a direction header serialises");
        HashMap::from([(DIRECTION_METADATA_KEY.to_string(), json)])
    }

    /// Reads the header from a safetensors buffer's metadata, without reading its tensors; the
    /// error says why the buffer is not a direction this build can read.
    pub fn read(bytes: &[u8]) -> Result<Self, String> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(DIRECTION_METADATA_KEY))
            .ok_or_else(|| format!("missing `{DIRECTION_METADATA_KEY}` metadata (not a FlowGrad direction)"))?;
        let header: Self = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if header.format != DIRECTION_FORMAT {
            return Err(format!("format {} is not supported (expected {DIRECTION_FORMAT})", header.format));
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(metadata: Option<HashMap<String, String>>) -> Vec<u8> {
        let values = [0u8; 16];
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &values).unwrap();
        safetensors::serialize([("controls", view)], metadata).unwrap()
    }

    #[test]
    fn a_header_reads_back_from_its_metadata() {
        let header = DirectionHeader::new(EditParams::default(), BTreeMap::from([("model".into(), "m".into())]));
        assert_eq!(DirectionHeader::read(&buffer(Some(header.metadata()))).unwrap(), header);
    }

    #[test]
    fn other_buffers_and_other_formats_are_refused() {
        assert!(DirectionHeader::read(b"\x89PNG").is_err());
        let err = DirectionHeader::read(&buffer(None)).unwrap_err();
        assert!(err.contains("not a FlowGrad direction"), "{err}");
        let future = DirectionHeader {
            format: DIRECTION_FORMAT + 1,
            ..DirectionHeader::new(EditParams::default(), BTreeMap::new())
        };
        let err = DirectionHeader::read(&buffer(Some(future.metadata()))).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
    }
}
