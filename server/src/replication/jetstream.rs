//! NATS JetStream as the replication log: one stream (`--stream`, on
//! subject `<stream>.push`), created if missing; pushes published with the
//! `Nats-Msg-Id` header for de-duplication; read with an ordered consumer.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use axum::body::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::log::{Batches, Bounds, Log, LogFault};

/// How long a publish waits for JetStream's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// A JetStream stream on a nats-server.
pub(crate) struct JetStream {
    url: String,
    stream: String,
    subject: String,
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

impl JetStream {
    /// A client of the nats-server at `url` (stream `stream`), connecting
    /// in the background: a server starts while the log is down.
    pub(crate) async fn connect(url: &str, stream: &str) -> Result<JetStream, String> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .name("skewless serve")
            .connect(url)
            .await
            .map_err(|e| e.to_string())?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(PUBLISH_TIMEOUT);
        Ok(JetStream {
            url: url.to_string(),
            stream: stream.to_string(),
            subject: format!("{stream}.push"),
            client,
            jetstream,
        })
    }

    async fn open(&self) -> Result<stream::Stream, String> {
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot open the stream: {e}"))
    }
}

impl Log for JetStream {
    fn describe(&self) -> String {
        format!("stream `{}` on {}", self.stream, self.url)
    }

    fn publish<'a>(&'a self, id: &'a str, body: Bytes) -> BoxFuture<'a, Result<(u64, bool), LogFault>> {
        async move {
            // A message published while disconnected would be buffered and
            // maybe sent later: refuse at once instead.
            if self.client.connection_state() != async_nats::connection::State::Connected {
                return Err(LogFault::Unavailable("not connected".into()));
            }
            // The log takes messages up to its max_payload (1 MB by
            // default), which may be less than this server's body limit.
            let max = self.client.server_info().max_payload;
            if body.len() > max {
                return Err(LogFault::TooLarge { max });
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
            let unavailable = |e: &dyn std::fmt::Display| LogFault::Unavailable(e.to_string());
            let ack = self
                .jetstream
                .publish_with_headers(self.subject.clone(), headers, body)
                .await
                .map_err(|e| unavailable(&e))?
                .await
                .map_err(|e| unavailable(&e))?;
            Ok((ack.sequence, ack.duplicate))
        }
        .boxed()
    }

    fn bounds(&self) -> BoxFuture<'_, Result<Bounds, String>> {
        async move {
            let mut stream = self.open().await?;
            let info = stream
                .info()
                .await
                .map_err(|e| format!("cannot read the stream: {e}"))?;
            Ok(Bounds {
                first: info.state.first_sequence.max(1),
                last: info.state.last_sequence,
            })
        }
        .boxed()
    }

    fn read_from(&self, start: u64, max_batch: usize) -> BoxFuture<'_, Result<Batches, String>> {
        async move {
            let consumer = self
                .open()
                .await?
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: self.subject.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("cannot consume the stream: {e}"))?;
            let messages = consumer
                .messages()
                .await
                .map_err(|e| format!("cannot consume the stream: {e}"))?;
            let batches = messages
                .map(|message| {
                    let message = message.map_err(|e| format!("lost the stream: {e}"))?;
                    let info = message
                        .info()
                        .map_err(|e| format!("a message without its stream sequence: {e}"))?;
                    Ok((info.stream_sequence, message.message.payload.clone()))
                })
                .ready_chunks(max_batch)
                .map(|chunk| chunk.into_iter().collect::<Result<Vec<_>, String>>());
            Ok(batches.boxed())
        }
        .boxed()
    }
}
