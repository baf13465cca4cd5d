//! Where spans are exported (`[telemetry]`, README "Tracing"): the settings, then the standard
//! `OTEL_*` variables.

use super::{SettingsError, TelemetrySettings};

fn invalid(reason: String) -> SettingsError {
    SettingsError::Invalid {
        key: "telemetry",
        reason,
    }
}

/// Where and how spans are exported, from the settings and the standard variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExport {
    pub endpoint: String,
    pub grpc: bool,
    pub service_name: String,
}

impl OtlpExport {
    /// `None` when telemetry is off: no endpoint in the settings or the `OTEL_*` variables, or
    /// `OTEL_SDK_DISABLED=true`.
    pub fn plan(
        settings: &TelemetrySettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpExport>, SettingsError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let protocol = Some(settings.otlp_protocol.clone())
            .filter(|p| !p.is_empty())
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".to_string());
        let grpc = match protocol.trim() {
            "http/protobuf" => false,
            "grpc" => true,
            other => {
                return Err(invalid(format!(
                    "otlp_protocol must be \"http/protobuf\" or \"grpc\", got {other:?} (\"http/json\" is not supported)"
                )));
            }
        };
        // A base URL gets the signal's path, as OTEL_EXPORTER_OTLP_ENDPOINT does; the traces
        // variable is taken as it is.
        let base = |url: String| -> String {
            if grpc {
                return url;
            }
            match url::Url::parse(&url) {
                Ok(parsed) if parsed.path() == "/" || parsed.path().is_empty() => {
                    format!("{}/v1/traces", url.trim_end_matches('/'))
                }
                _ => url,
            }
        };
        let endpoint = if !settings.otlp_endpoint.is_empty() {
            base(settings.otlp_endpoint.clone())
        } else if let Some(traces) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            traces
        } else if let Some(all) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            base(all)
        } else {
            return Ok(None);
        };
        let parsed = url::Url::parse(&endpoint)
            .map_err(|e| invalid(format!("otlp_endpoint is not a URL: {e}")))?;
        // The endpoint is logged at start: credentials go in OTEL_EXPORTER_OTLP_HEADERS.
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "otlp_endpoint must not carry credentials; give a collector that needs them \
                 OTEL_EXPORTER_OTLP_HEADERS (e.g. authorization=Bearer%20…)"
                    .to_string(),
            ));
        }
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(invalid(format!(
                "otlp_endpoint {endpoint:?} must be an http(s) URL of the collector, e.g. http://127.0.0.1:4318"
            )));
        }
        let service_name = Some(settings.service_name.clone())
            .filter(|s| !s.is_empty())
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "a2a-push-hub".to_string());
        Ok(Some(OtlpExport {
            endpoint,
            grpc,
            service_name,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_unless_an_endpoint_is_set_and_a_base_url_gets_the_traces_path() {
        let settings = TelemetrySettings::default();
        assert_eq!(OtlpExport::plan(&settings, env(&[])).unwrap(), None);
        let from_env = OtlpExport::plan(
            &settings,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(from_env.endpoint, "http://collector:4318/v1/traces");
        assert!(!from_env.grpc);
        assert_eq!(from_env.service_name, "a2a-push-hub");
        let verbatim = OtlpExport::plan(
            &settings,
            env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
                ("OTEL_SERVICE_NAME", "hub-eu"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(verbatim.endpoint, "http://c:4318/custom");
        assert_eq!(verbatim.service_name, "hub-eu");
        let disabled = OtlpExport::plan(
            &settings,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(disabled, None);
    }

    #[test]
    fn settings_win_over_the_variables_and_bad_values_are_named() {
        let settings = TelemetrySettings {
            otlp_endpoint: "http://127.0.0.1:4317".into(),
            otlp_protocol: "grpc".into(),
            service_name: "edge".into(),
        };
        let export = OtlpExport::plan(
            &settings,
            env(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_SERVICE_NAME", "ignored"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            export,
            OtlpExport {
                endpoint: "http://127.0.0.1:4317".into(),
                grpc: true,
                service_name: "edge".into()
            }
        );
        let bad_protocol = TelemetrySettings {
            otlp_endpoint: "http://c:4318".into(),
            otlp_protocol: "http/json".into(),
            ..Default::default()
        };
        let error = OtlpExport::plan(&bad_protocol, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("otlp_protocol"), "{error}");
        let with_credentials = TelemetrySettings {
            otlp_endpoint: "http://user:s3cret@collector:4318".into(),
            ..Default::default()
        };
        let error = OtlpExport::plan(&with_credentials, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("credentials") && !error.contains("s3cret"),
            "{error}"
        );
        let bad_url = TelemetrySettings {
            otlp_endpoint: "collector:4318".into(),
            ..Default::default()
        };
        let error = OtlpExport::plan(&bad_url, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("otlp_endpoint"), "{error}");
    }
}
