//! A2A version negotiation (spec 1.x §3.6): the `A2A-Version` header or query parameter,
//! compared on `Major.Minor` only.

/// A protocol version the hub serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WireVersion {
    #[serde(rename = "1.0")]
    V1_0,
}

impl WireVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            WireVersion::V1_0 => "1.0",
        }
    }
}

/// The version a client asked for that the hub does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("A2A version {0:?} is not supported; this hub serves 1.0")]
pub struct UnsupportedVersion(pub String);

/// Resolves the requested version. `requested` is the header or query value, if any; without
/// one, a 1.0-shaped request (PascalCase method, REST path without `/v1/`) means 1.0.
pub fn negotiate(requested: Option<&str>) -> Result<WireVersion, UnsupportedVersion> {
    let Some(raw) = requested.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(WireVersion::V1_0);
    };
    let mut parts = raw.split('.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next().unwrap_or("0");
    match (major, minor) {
        ("1", "0") => Ok(WireVersion::V1_0),
        _ => Err(UnsupportedVersion(raw.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_versions_are_ignored_and_absent_means_one_zero() {
        assert_eq!(negotiate(None), Ok(WireVersion::V1_0));
        assert_eq!(negotiate(Some("")), Ok(WireVersion::V1_0));
        assert_eq!(negotiate(Some("1.0")), Ok(WireVersion::V1_0));
        assert_eq!(negotiate(Some("1.0.1")), Ok(WireVersion::V1_0));
        assert_eq!(negotiate(Some("1")), Ok(WireVersion::V1_0));
    }

    #[test]
    fn versions_not_served_are_refused_by_name() {
        for v in ["0.3", "2.0", "1.1", "banana"] {
            assert_eq!(negotiate(Some(v)), Err(UnsupportedVersion(v.to_string())));
        }
    }
}
