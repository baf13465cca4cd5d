//! The A2A 1.0 wire shape of push-notification configs (`TaskPushNotificationConfig`) and
//! of the requests that address them, converted to and from the hub's own model.

use a2a::{AuthenticationInfo, TaskPushNotificationConfig};

use super::params::{InvalidField, Params, check_id};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// `Authorization: {scheme} {credentials}` to send with each delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authentication {
    pub scheme: String,
    pub credentials: Option<Secret>,
    /// Every scheme a 0.3 client gave (`schemes[]`), answered back on 0.3 reads; the first is
    /// `scheme`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemes_v03: Vec<String>,
}

/// A stored config as the bindings answer it: never its token or credentials.
#[derive(Debug, Clone, Copy)]
pub struct ConfigView<'a> {
    pub tenant: &'a str,
    pub task_id: &'a str,
    pub id: &'a str,
    pub url: &'a str,
    pub authentication: Option<&'a Authentication>,
}

/// What a client asked to create; the domain layer validates the URL and assigns ids.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigInput {
    pub id: Option<String>,
    pub task_id: Option<String>,
    pub tenant: Option<String>,
    pub url: String,
    pub token: Option<String>,
    pub authentication: Option<Authentication>,
}

/// Longest token or credentials the hub stores; bounds header sizes on every delivery.
const MAX_SECRET_BYTES: usize = 4096;
const MAX_URL_BYTES: usize = 2048;

fn check_header_safe(field: String, value: &str) -> Result<(), InvalidField> {
    if value.len() > MAX_SECRET_BYTES {
        return Err(InvalidField::new(
            field,
            format!("must be at most {MAX_SECRET_BYTES} bytes"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(InvalidField::new(
            field,
            "must not contain control characters (it is sent in an HTTP header)",
        ));
    }
    Ok(())
}

/// Reads a `TaskPushNotificationConfig` (the params of Create, or the REST body).
pub fn config_input(params: &Params) -> Result<ConfigInput, InvalidField> {
    let url = params.required_string("url")?;
    if url.len() > MAX_URL_BYTES {
        return Err(InvalidField::new(
            "url",
            format!("must be at most {MAX_URL_BYTES} bytes"),
        ));
    }
    let id = params.string("id")?;
    if let Some(id) = &id {
        check_id("id", id)?;
    }
    let task_id = params.string("taskId")?;
    if let Some(task_id) = &task_id {
        check_id("taskId", task_id)?;
    }
    let tenant = params.string("tenant")?;
    let token = params.string("token")?;
    if let Some(token) = &token {
        check_header_safe("token".to_string(), token)?;
        if token.starts_with(crate::secret::SECRET_PREFIX)
            && crate::secret::parse_secret(token).is_none()
        {
            return Err(InvalidField::new(
                "token",
                "starts with whsec_ but is not a Standard Webhooks secret (whsec_ followed by base64)",
            ));
        }
    }
    let authentication = match params.object("authentication")? {
        None => None,
        Some(auth) => {
            let scheme = auth.required_string("scheme")?;
            if scheme.len() > 64
                || !scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~+!#$%&'*^`|".contains(c))
            {
                return Err(InvalidField::new(
                    "authentication.scheme",
                    "must be an HTTP authentication scheme token such as Bearer or Basic",
                ));
            }
            let credentials = auth.string("credentials")?;
            if let Some(credentials) = &credentials {
                check_header_safe("authentication.credentials".to_string(), credentials)?;
            }
            Some(Authentication {
                scheme,
                credentials: credentials.map(Secret::new),
                schemes_v03: Vec::new(),
            })
        }
    };
    Ok(ConfigInput {
        id,
        task_id,
        tenant,
        url,
        token,
        authentication,
    })
}

/// Addresses one config: `{taskId, id, tenant?}` (Get and Delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigAddress {
    pub tenant: Option<String>,
    pub task_id: String,
    pub id: String,
}

pub fn config_address(params: &Params) -> Result<ConfigAddress, InvalidField> {
    let task_id = params.required_string("taskId")?;
    check_id("taskId", &task_id)?;
    let id = params.required_string("id")?;
    check_id("id", &id)?;
    Ok(ConfigAddress {
        tenant: params.string("tenant")?,
        task_id,
        id,
    })
}

/// A List request: `{taskId, pageSize?, pageToken?, tenant?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub tenant: Option<String>,
    pub task_id: String,
    pub page_size: Option<i64>,
    pub page_token: Option<String>,
}

pub fn list_request(params: &Params) -> Result<ListRequest, InvalidField> {
    let task_id = params.required_string("taskId")?;
    check_id("taskId", &task_id)?;
    Ok(ListRequest {
        tenant: params.string("tenant")?,
        task_id,
        page_size: params.integer("pageSize")?,
        page_token: params.string("pageToken")?,
    })
}

/// The config as answered to A2A clients. Secrets are never answered: `token` and
/// `authentication.credentials` are omitted; the scheme is kept so clients see how the hub
/// will authenticate.
pub fn render(config: ConfigView<'_>) -> TaskPushNotificationConfig {
    TaskPushNotificationConfig {
        url: config.url.to_string(),
        id: Some(config.id.to_string()),
        task_id: config.task_id.to_string(),
        token: None,
        authentication: config.authentication.map(|auth| AuthenticationInfo {
            scheme: auth.scheme.clone(),
            credentials: None,
        }),
        tenant: (!config.tenant.is_empty()).then(|| config.tenant.to_string()),
    }
}

/// `ListTaskPushNotificationConfigsResponse`, always with `configs` and `nextPageToken`
/// present (ProtoJSON would omit empty ones; some clients break on that).
pub fn render_list<'a>(
    configs: impl IntoIterator<Item = ConfigView<'a>>,
    next_page_token: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "configs": configs.into_iter().map(render).collect::<Vec<_>>(),
        "nextPageToken": next_page_token.unwrap_or(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_config_is_read_from_snake_or_camel_case() {
        let params = Params::from_value(Some(json!({
            "task_id": "t1", "id": "c1", "url": "https://example.com/hook", "token": "tok",
            "authentication": {"scheme": "Bearer", "credentials": "cred"}
        })))
        .unwrap();
        let input = config_input(&params).unwrap();
        assert_eq!(input.task_id.as_deref(), Some("t1"));
        assert_eq!(
            input.authentication.unwrap().credentials.unwrap().expose(),
            "cred"
        );
    }

    #[test]
    fn missing_url_and_header_injection_are_refused() {
        let no_url = Params::from_value(Some(json!({"taskId": "t1"}))).unwrap();
        assert_eq!(config_input(&no_url).unwrap_err().field, "url");
        let injection = Params::from_value(Some(
            json!({"url": "https://x/", "token": "a\r\nX-Evil: 1"}),
        ))
        .unwrap();
        assert_eq!(config_input(&injection).unwrap_err().field, "token");
        let bad_scheme = Params::from_value(Some(
            json!({"url": "https://x/", "authentication": {"scheme": "Bearer x"}}),
        ))
        .unwrap();
        assert_eq!(
            config_input(&bad_scheme).unwrap_err().field,
            "authentication.scheme"
        );
    }
}
