//! SHA-256 as lowercase hex: how the hub names a body (a JWT's `request_body_sha256`, an
//! inbound replay key, an idempotent event's fingerprint).

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
