//! A webhook receiver that prints every delivery it gets: the headers a2a-push-hub sends and
//! the body. Answers 200, or the status given with `--fail-with`.
//!
//! `cargo run --example receiver -- 127.0.0.1:9000 [--fail-with 503]`

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .map(String::as_str)
        .unwrap_or("127.0.0.1:9000")
        .to_string();
    let status = match args.iter().position(|a| a == "--fail-with") {
        Some(i) => StatusCode::from_u16(
            args.get(i + 1)
                .ok_or("--fail-with needs a status")?
                .parse()?,
        )?,
        None => StatusCode::OK,
    };
    let app = Router::new().fallback(
        move |uri: Uri, headers: HeaderMap, body: Bytes| async move {
            println!("POST {uri}");
            for name in [
                "webhook-id",
                "webhook-timestamp",
                "x-a2a-push-sequence",
                "content-type",
                "a2a-version",
                "authorization",
                "x-a2a-notification-token",
            ] {
                if let Some(value) = headers.get(name) {
                    println!("  {name}: {}", value.to_str().unwrap_or("<binary>"));
                }
            }
            println!("  {}\n", String::from_utf8_lossy(&body));
            status
        },
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("receiver listening on http://{addr}/ (answering {status})");
    axum::serve(listener, app).await?;
    Ok(())
}
