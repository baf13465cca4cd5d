//! Checks that keep a browser from being turned against a listener: the `Host` a request
//! names must be one the hub answers to (DNS rebinding: a page of `evil.example` whose name
//! now resolves to the hub's address), and state-changing calls must carry a JSON body type,
//! which a cross-site form or `text/plain` POST cannot send without the browser asking first.

use axum::http::{HeaderMap, header};

use crate::config::Settings;

/// Why a request's `Host` is refused; says what to configure.
pub fn check_host(
    settings: &Settings,
    public_base_url: &str,
    headers: &HeaderMap,
) -> Result<(), String> {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return Err("the request has no Host header".to_string());
    };
    let name = host_name(host);
    // An address names no domain a rebinding page could control.
    if name.parse::<std::net::IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    let base_host = url::Url::parse(public_base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    let allowed = base_host
        .iter()
        .chain(settings.server.allowed_hosts.iter())
        .any(|allowed| allowed.eq_ignore_ascii_case(name));
    if allowed {
        return Ok(());
    }
    Err(format!(
        "Host {name:?} is not a name this hub answers to; add it to server.allowed_hosts (IP addresses, localhost and server.public_base_url's host are always accepted)"
    ))
}

/// The name part of a `Host` header value: without the port, IPv6 without brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether the request declares a JSON body (`application/json`, or any `+json` type such as
/// `application/a2a+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn addresses_localhost_and_configured_names_are_accepted_and_others_refused() {
        let mut settings = Settings::default();
        settings.server.allowed_hosts = vec!["hub.internal".to_string()];
        let base = "https://hub.example.com";
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8081",
            "10.0.0.7",
            "localhost:8081",
            "hub.example.com",
            "HUB.internal:443",
        ] {
            check_host(&settings, base, &headers(&[("host", ok)])).unwrap();
        }
        for refused in [
            "evil.example:8081",
            "hub.example.com.evil.example",
            "localhost.evil",
        ] {
            let reason = check_host(&settings, base, &headers(&[("host", refused)])).unwrap_err();
            assert!(reason.contains("server.allowed_hosts"), "{reason}");
        }
        assert!(check_host(&settings, base, &HeaderMap::new()).is_err());
    }

    #[test]
    fn json_types_are_recognised_and_form_or_text_types_are_not() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/a2a+json",
            "Application/JSON",
        ] {
            assert!(is_json(&headers(&[("content-type", ok)])), "{ok}");
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json",
        ] {
            assert!(
                !is_json(&headers(&[("content-type", refused)])),
                "{refused}"
            );
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
