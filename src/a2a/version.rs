//! A2A version negotiation (spec 1.x §3.6): the `A2A-Version` header or query parameter,
//! compared on `Major.Minor` only.

/// A protocol version the hub serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WireVersion {
    #[serde(rename = "0.3")]
    V0_3,
    #[serde(rename = "1.0")]
    V1_0,
}

impl WireVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            WireVersion::V0_3 => "0.3",
            WireVersion::V1_0 => "1.0",
        }
    }
}

/// The version a client asked for that the hub does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("A2A version {0:?} is not supported; this hub serves 1.0 and 0.3")]
pub struct UnsupportedVersion(pub String);

/// The version a JSON-RPC method name belongs to: `tasks/…` and `message/…` are 0.3,
/// PascalCase names are 1.0.
pub fn of_method(method: &str) -> WireVersion {
    if method.contains('/') {
        WireVersion::V0_3
    } else {
        WireVersion::V1_0
    }
}

/// Resolves the requested version. `requested` is the header or query value, if any; without
/// one, `inferred` (from the method name or the REST path) decides.
pub fn negotiate(
    requested: Option<&str>,
    inferred: WireVersion,
) -> Result<WireVersion, UnsupportedVersion> {
    let Some(raw) = requested.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(inferred);
    };
    let mut parts = raw.split('.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next().unwrap_or("0");
    match (major, minor) {
        ("1", "0") => Ok(WireVersion::V1_0),
        ("0", "3") => Ok(WireVersion::V0_3),
        _ => Err(UnsupportedVersion(raw.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_versions_are_ignored_and_absent_means_what_the_request_looks_like() {
        assert_eq!(negotiate(None, WireVersion::V1_0), Ok(WireVersion::V1_0));
        assert_eq!(negotiate(None, WireVersion::V0_3), Ok(WireVersion::V0_3));
        assert_eq!(
            negotiate(Some(""), WireVersion::V0_3),
            Ok(WireVersion::V0_3)
        );
        assert_eq!(
            negotiate(Some("1.0"), WireVersion::V0_3),
            Ok(WireVersion::V1_0)
        );
        assert_eq!(
            negotiate(Some("1.0.1"), WireVersion::V0_3),
            Ok(WireVersion::V1_0)
        );
        assert_eq!(
            negotiate(Some("0.3"), WireVersion::V1_0),
            Ok(WireVersion::V0_3)
        );
        assert_eq!(
            negotiate(Some("0.3.0"), WireVersion::V1_0),
            Ok(WireVersion::V0_3)
        );
        assert_eq!(
            of_method("tasks/pushNotificationConfig/set"),
            WireVersion::V0_3
        );
        assert_eq!(of_method("GetTask"), WireVersion::V1_0);
    }

    #[test]
    fn versions_not_served_are_refused_by_name() {
        for v in ["0.2", "2.0", "1.1", "banana"] {
            assert_eq!(
                negotiate(Some(v), WireVersion::V1_0),
                Err(UnsupportedVersion(v.to_string()))
            );
        }
    }
}
