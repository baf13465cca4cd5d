//! What signing and verifying cost per delivery: `cargo bench --bench signing`.
//! Compare with the rest of a delivery's CPU (an fsynced commit share, an HTTP request) to see
//! that signing is not the bottleneck.

use a2a_push_hub::internals::signing::{
    ALG_ED25519, ALG_ES256, JwtInput, KeySet, Signer, SigningInput, generate, jwk, jwt,
    sign_delivery, webhooks,
};
use aws_lc_rs::signature::KeyPair;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const BODY: &[u8] = br#"{"statusUpdate":{"taskId":"6e862543-0358-4674-9d3c-7c55de8cfd9d","contextId":"5ec97c85-4327-478f-9b15-0f62d11d6fe4","status":{"state":"TASK_STATE_WORKING","message":{"messageId":"23e706e1-1f5c-403e-b177-5b72c6ddc5bb","contextId":"5ec97c85-4327-478f-9b15-0f62d11d6fe4","taskId":"6e862543-0358-4674-9d3c-7c55de8cfd9d","role":"ROLE_AGENT","parts":[{"text":"working..."}]},"timestamp":"2026-11-28T03:03:35.125841Z"}}}"#;

fn bench(c: &mut Criterion) {
    let ed = generate(ALG_ED25519, 0).unwrap();
    let es = generate(ALG_ES256, 0).unwrap();
    let ed_public = match &ed.signer {
        Signer::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
        Signer::Es256(_) => unreachable!(),
    };
    let jwks = serde_json::json!({"keys": [jwk(&es.record)]});
    let keys = KeySet::new(vec![ed, es]);
    let secret = webhooks::parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let input = |hmac: bool, jwt: bool| SigningInput {
        webhook_id: "01a2208c-9351-7573-82bd-8dcd4107fd56",
        timestamp_s: 1_795_841_567,
        body: BODY,
        hmac_secret: hmac.then_some(secret.as_slice()),
        jwt: jwt.then(|| JwtInput {
            issuer: "https://hub.example",
            audience: "https://receiver.example/hook",
            task_id: "6e862543-0358-4674-9d3c-7c55de8cfd9d",
            jti: "01a2208c-9351-7573-82bd-8dcd4107fd56.1".to_string(),
        }),
    };
    let mut sign = c.benchmark_group("sign per delivery");
    sign.bench_function("v1a (Ed25519)", |b| {
        b.iter(|| sign_delivery(&keys, black_box(&input(false, false)), 0).unwrap())
    });
    sign.bench_function("v1a + v1 (HMAC)", |b| {
        b.iter(|| sign_delivery(&keys, black_box(&input(true, false)), 0).unwrap())
    });
    sign.bench_function("v1a + JWT (ES256)", |b| {
        b.iter(|| sign_delivery(&keys, black_box(&input(false, true)), 0).unwrap())
    });
    sign.finish();

    let signed = sign_delivery(&keys, &input(true, true), 0).unwrap();
    let token = signed
        .authorization
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_string();
    let v1a_only = webhooks::WebhookKeys {
        secrets: vec![],
        public_keys: vec![ed_public],
    };
    let v1_only = webhooks::WebhookKeys {
        secrets: vec![secret.clone()],
        public_keys: vec![],
    };
    let header = |keep: &str| {
        signed
            .signature
            .split(' ')
            .filter(|s| s.starts_with(keep))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (v1a_header, v1_header) = (header("v1a,"), header("v1,"));
    let id = Some("01a2208c-9351-7573-82bd-8dcd4107fd56");
    let ts = Some("1795841567");
    let mut verify = c.benchmark_group("verify per delivery");
    verify.bench_function("v1a (Ed25519)", |b| {
        b.iter(|| {
            webhooks::verify(
                id,
                ts,
                Some(&v1a_header),
                black_box(BODY),
                &v1a_only,
                1_795_841_567,
                300,
            )
            .unwrap()
        })
    });
    verify.bench_function("v1 (HMAC)", |b| {
        b.iter(|| {
            webhooks::verify(
                id,
                ts,
                Some(&v1_header),
                black_box(BODY),
                &v1_only,
                1_795_841_567,
                300,
            )
            .unwrap()
        })
    });
    let expect = jwt::Expectations {
        audience: Some("https://receiver.example/hook"),
        issuer: None,
        leeway_s: 0,
    };
    verify.bench_function("JWT (ES256)", |b| {
        b.iter(|| jwt::verify(&token, &jwks, &expect, black_box(BODY), 1_795_841_567).unwrap())
    });
    verify.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
