//! Spans of the hub's work, exported over OTLP (docs/TRACING.md), off unless configured.
//!
//! Three kinds of span, after OpenTelemetry's messaging conventions: `create` when an event is
//! published through the event API, `receive` when a peer's push is accepted, and `send` for
//! each delivery attempt. A `send` span is a child of the context the event arrived in (so the
//! receiver's `traceparent` is in the publisher's trace) and links to its event's `create` or
//! `receive` span — a link rather than a parent, since one event fans out to every config.
//! Attributes name ids and hosts, never URLs with their paths and queries, tokens or bodies.
//!
//! When telemetry is off every function here returns at once and nothing is recorded.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracer, SdkTracerProvider};

use crate::config::OtlpExport as Export;
use crate::trace::TraceContext;

/// The spans' instrumentation scope.
const SCOPE: &str = "a2a-push-hub";
/// How long spans wait to be exported together, unless `OTEL_BSP_SCHEDULE_DELAY` says.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(pub String);

/// Opens a TCP connection to `(host, port)`: the gRPC exporter's way out.
pub type Connect = Arc<
    dyn Fn(
            String,
            u16,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = std::io::Result<tokio::net::TcpStream>> + Send>,
        > + Send
        + Sync,
>;

/// The hub's tracer, or nothing when telemetry is off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    exporting: Option<Arc<Exporting>>,
}

struct Exporting {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Telemetry {
    /// Starts exporting as `export` says, on the current tokio runtime. `http` is the client
    /// the HTTP exporter uses and `connect` how the gRPC exporter opens connections: both the
    /// hub's SSRF guard, opened to the collector.
    pub fn start(
        export: &Export,
        http: reqwest::Client,
        connect: Connect,
    ) -> Result<Telemetry, TelemetryError> {
        let exporter = if export.grpc {
            let endpoint = tonic::transport::Endpoint::from_shared(export.endpoint.clone())
                .map_err(|e| TelemetryError(format!("otlp_endpoint: {e}")))?
                .connect_timeout(Duration::from_secs(10));
            let channel = endpoint.connect_with_connector_lazy(tower::service_fn(
                move |uri: tonic::transport::Uri| {
                    let connect = connect.clone();
                    async move {
                        let host = uri.host().unwrap_or_default().to_string();
                        let port = uri
                            .port_u16()
                            .unwrap_or(if uri.scheme_str() == Some("https") {
                                443
                            } else {
                                80
                            });
                        let stream = connect(host, port).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                },
            ));
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_channel(channel)
                .build()
        } else {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(http)
                .with_endpoint(export.endpoint.clone())
                .build()
        }
        .map_err(|e| TelemetryError(e.to_string()))?;
        let mut batching = BatchConfigBuilder::default();
        if std::env::var_os("OTEL_BSP_SCHEDULE_DELAY").is_none() {
            batching = batching.with_scheduled_delay(EXPORT_EVERY);
        }
        let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
            .with_batch_config(batching.build())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(export.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer(SCOPE);
        tracing::info!(endpoint = %export.endpoint, protocol = if export.grpc { "grpc" } else { "http/protobuf" }, "exporting spans over OTLP");
        Ok(Telemetry {
            exporting: Some(Arc::new(Exporting { provider, tracer })),
        })
    }

    pub fn is_on(&self) -> bool {
        self.exporting.is_some()
    }

    /// Exports what is still buffered and stops (at shutdown).
    pub async fn shutdown(&self) {
        let Some(exporting) = self.exporting.clone() else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || {
            exporting
                .provider
                .shutdown_with_timeout(Duration::from_secs(5))
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "spans still buffered could not be exported");
        }
    }

    /// The span of an event published through the event API, in the publisher's trace when
    /// it came with one.
    pub fn create(&self, publisher: Option<&TraceContext>, task_id: &str) -> HubSpan {
        self.span(
            "create tasks/{taskId}/events",
            SpanKind::Producer,
            publisher,
            None,
            vec![
                KeyValue::new("messaging.system", "a2a"),
                KeyValue::new("messaging.operation.type", "create"),
                KeyValue::new("messaging.operation.name", "publish"),
                KeyValue::new("messaging.destination.template", "tasks/{taskId}/events"),
                KeyValue::new("a2a.task.id", task_id.to_string()),
            ],
        )
    }

    /// The span of a peer's push the inbound intake accepted, in the peer's trace when it
    /// came with one.
    pub fn receive(
        &self,
        peer: Option<&TraceContext>,
        subscription_id: &str,
        task_id: &str,
    ) -> HubSpan {
        self.span(
            "receive inbound/{subscriptionId}",
            SpanKind::Consumer,
            peer,
            None,
            vec![
                KeyValue::new("messaging.system", "a2a"),
                KeyValue::new("messaging.operation.type", "receive"),
                KeyValue::new("messaging.operation.name", "push"),
                KeyValue::new("messaging.destination.template", "inbound/{subscriptionId}"),
                KeyValue::new("a2a.inbound.subscription.id", subscription_id.to_string()),
                KeyValue::new("a2a.task.id", task_id.to_string()),
            ],
        )
    }

    /// The span of one delivery attempt: a child of `parent` (the context its event arrived
    /// in), linked to `origin` (the event's `create` or `receive` span).
    pub fn send(
        &self,
        parent: &TraceContext,
        origin: Option<&str>,
        attempt: SendAttrs<'_>,
    ) -> HubSpan {
        let mut attributes = vec![
            KeyValue::new("messaging.system", "a2a"),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.operation.name", "deliver"),
            KeyValue::new(
                "messaging.destination.template",
                "tasks/{taskId}/pushNotificationConfigs/{configId}",
            ),
            KeyValue::new("messaging.message.id", attempt.delivery_id.to_string()),
            KeyValue::new("a2a.task.id", attempt.task_id.to_string()),
            KeyValue::new("a2a.push_config.id", attempt.config_id.to_string()),
            KeyValue::new("a2a.event.sequence", attempt.sequence as i64),
            KeyValue::new("a2a.delivery.attempt", i64::from(attempt.number)),
            KeyValue::new("http.request.method", "POST"),
        ];
        if let Ok(url) = url::Url::parse(attempt.url) {
            attributes.push(KeyValue::new("url.scheme", url.scheme().to_string()));
            if let Some(host) = url.host_str() {
                attributes.push(KeyValue::new("server.address", host.to_string()));
            }
            if let Some(port) = url.port_or_known_default() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        self.span(
            "send tasks/{taskId}/pushNotificationConfigs/{configId}",
            SpanKind::Producer,
            Some(parent),
            origin.map(|span_id| (parent, span_id)),
            attributes,
        )
    }

    fn span(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<&TraceContext>,
        link: Option<(&TraceContext, &str)>,
        attributes: Vec<KeyValue>,
    ) -> HubSpan {
        let Some(exporting) = &self.exporting else {
            return HubSpan { span: None };
        };
        let context = match parent.and_then(span_context) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let links = link
            // A span the event's attempts are children of already needs no link.
            .filter(|(trace, span_id)| trace.traceparent.get(36..52) != Some(*span_id))
            .and_then(|(trace, span_id)| {
                let mut linked = span_context(trace)?;
                linked = SpanContext::new(
                    linked.trace_id(),
                    SpanId::from_hex(span_id).ok()?,
                    linked.trace_flags(),
                    true,
                    linked.trace_state().clone(),
                );
                Some(vec![Link::with_context(linked)])
            })
            .unwrap_or_default();
        let span = exporting
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(&exporting.tracer, &context);
        HubSpan { span: Some(span) }
    }
}

/// What a `send` span records of its attempt.
pub struct SendAttrs<'a> {
    pub delivery_id: &'a str,
    pub task_id: &'a str,
    pub config_id: &'a str,
    pub sequence: u64,
    pub number: u32,
    /// The webhook URL: only its scheme, host and port are recorded.
    pub url: &'a str,
}

/// A span of the hub's, ended when dropped; does nothing when telemetry is off.
pub struct HubSpan {
    span: Option<opentelemetry_sdk::trace::Span>,
}

impl HubSpan {
    /// The span's own id (16 hex digits), when it is recorded or sampled out — `None` when
    /// telemetry is off.
    pub fn span_id(&self) -> Option<String> {
        let span = self.span.as_ref()?;
        let context = span.span_context();
        context
            .is_valid()
            .then(|| format!("{:016x}", context.span_id()))
    }

    /// The span's context as a hop sends it on.
    pub fn context(&self) -> Option<TraceContext> {
        let span = self.span.as_ref()?;
        let context = span.span_context();
        if !context.is_valid() {
            return None;
        }
        let state = context.trace_state().header();
        Some(TraceContext {
            traceparent: format!(
                "00-{:032x}-{:016x}-{:02x}",
                context.trace_id(),
                context.span_id(),
                context.trace_flags().to_u8()
            ),
            tracestate: (!state.is_empty()).then_some(state),
            baggage: None,
        })
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with a description that holds no secret.
    pub fn fail(&mut self, description: impl Into<String>) {
        if let Some(span) = &mut self.span {
            span.set_status(Status::error(description.into()));
        }
    }
}

impl Drop for HubSpan {
    fn drop(&mut self) {
        if let Some(span) = &mut self.span {
            span.end();
        }
    }
}

/// A stored trace context as OpenTelemetry's, remote.
fn span_context(trace: &TraceContext) -> Option<SpanContext> {
    let parent = &trace.traceparent;
    let trace_id = TraceId::from_hex(parent.get(3..35)?).ok()?;
    let span_id = SpanId::from_hex(parent.get(36..52)?).ok()?;
    let flags = u8::from_str_radix(parent.get(53..55)?, 16).ok()?;
    let state = trace
        .tracestate
        .as_deref()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        state,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_context_converts_both_ways() {
        let trace = TraceContext::parse(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("vendor=abc"),
            None,
        )
        .unwrap()
        .unwrap();
        let context = span_context(&trace).unwrap();
        assert_eq!(
            format!("{:032x}", context.trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(format!("{:016x}", context.span_id()), "00f067aa0ba902b7");
        assert!(context.is_sampled() && context.is_remote());
        assert_eq!(context.trace_state().header(), "vendor=abc");
        assert!(!Telemetry::default().is_on());
        assert_eq!(
            Telemetry::default().create(Some(&trace), "t").span_id(),
            None
        );
    }
}
