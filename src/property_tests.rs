//! Property tests over the parsers that face untrusted input: arbitrary JSON, bytes and
//! strings must never panic, and refused addresses stay refused in every spelling. (Longer,
//! coverage-guided runs: see docs/PERFORMANCE.md, "Fuzzing".)

use crate::a2a::event::parse_event;
use crate::a2a::params::Params;
use crate::a2a::push_config::{config_address, config_input, list_request};
use crate::a2a::v03;
use crate::signing::verify::{CapturedRequest, VerifyOptions, verify_request};
use crate::signing::{jwt, webhooks};
use crate::ssrf::Policy;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Arbitrary JSON, biased toward the keys the parsers look for.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("task".to_string()),
        Just("statusUpdate".to_string()),
        Just("artifactUpdate".to_string()),
        Just("message".to_string()),
        Just("taskId".to_string()),
        Just("task_id".to_string()),
        Just("id".to_string()),
        Just("url".to_string()),
        Just("token".to_string()),
        Just("authentication".to_string()),
        Just("scheme".to_string()),
        Just("schemes".to_string()),
        Just("status".to_string()),
        Just("state".to_string()),
        Just("parts".to_string()),
        Just("kind".to_string()),
        Just("pageSize".to_string()),
        Just("pageToken".to_string()),
        "[a-zA-Z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop_oneof![
            Just("TASK_STATE_WORKING".to_string()),
            Just("working".to_string()),
            Just("task".to_string()),
            ".{0,12}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// 512 cases per property in `cargo test`; `PROPTEST_CASES` asks for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn request_params_never_panic(value in json_value()) {
        if let Ok(params) = Params::from_value(Some(value.clone())) {
            let _ = config_input(&params);
            let _ = config_address(&params);
            let _ = list_request(&params);
            let _ = v03::config_input(Some("t".into()), &params);
        }
    }

    #[test]
    fn event_bodies_never_panic(value in json_value()) {
        let _ = parse_event(&value, "");
        if let Some(Ok(converted)) = v03::to_stream_response(&value) {
            let _ = parse_event(&converted, "");
        }
        let _ = v03::task_from_v1(&value);
    }

    #[test]
    fn captured_requests_and_signatures_never_panic(raw in prop::collection::vec(any::<u8>(), 0..512), header in ".{0,64}", token in ".{0,200}") {
        let request = CapturedRequest::parse(&raw).unwrap_or_default();
        let options = VerifyOptions {
            secret: webhooks::parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            public_keys: vec![vec![7; 32]],
            jwks: Some(json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": header.clone(), "x": header.clone(), "y": token.clone()}]})),
            tolerance_s: 300,
            now_s: 1_700_000_000,
            ..VerifyOptions::default()
        };
        let _ = verify_request(&request, &options);
        let keys = webhooks::WebhookKeys { secrets: vec![vec![1, 2, 3]], public_keys: vec![vec![0; 32]] };
        let _ = webhooks::verify(Some(&header), Some(&header), Some(&token), &raw, &keys, 0, 300);
        let _ = jwt::verify(&token, &json!({"keys": []}), &jwt::Expectations::default(), &raw, 0);
        let _ = webhooks::parse_secret(&token);
        let _ = webhooks::parse_public_key(&token);
    }

    #[test]
    fn urls_never_panic(url in ".{0,80}") {
        let _ = Policy::default().check_url_syntax(&url);
    }

    #[test]
    fn loopback_and_private_ipv4_are_refused_in_every_spelling(host in any::<u8>(), rest in any::<u16>(), class in 0usize..4) {
        let first = [127u8, 10, 192, 169][class];
        let second = match class { 2 => 168, 3 => 254, _ => host };
        let addr = u32::from_be_bytes([first, second, (rest >> 8) as u8, rest as u8]);
        let spellings = [
            format!("http://{first}.{second}.{}.{}/", rest >> 8, rest & 0xff),
            format!("http://{addr}/"),
            format!("http://0x{addr:x}/"),
            format!("http://{first}.{}/", (u32::from(second) << 16) | u32::from(rest)),
            format!("http://0{first:o}.{second}.{}.{}/", rest >> 8, rest & 0xff),
            format!("http://[::ffff:{first}.{second}.{}.{}]/", rest >> 8, rest & 0xff),
        ];
        for url in spellings {
            prop_assert!(Policy::default().check_url_syntax(&url).is_err(), "{} was not refused", url);
        }
    }
}
