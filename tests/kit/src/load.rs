//! The one HTTP load generator of the serve, soak and overload benches and
//! tests: HTTP/1.1 keep-alive connections over loopback (hyper), driven as
//! closed loops (each sends when its last answer came, as wrk does) or as
//! an open loop (a fixed rate, whether or not earlier requests were
//! answered, as independent clients do, so an overloaded server cannot slow
//! the load down).
//!
//! Every answer carries its status, whether it said when to retry, when it
//! was sent and how long it took; the callers make their figures from them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `/get-online-features`, `/push`...
    pub path: String,
    /// The JSON body, sent as is.
    pub body: Bytes,
    /// `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
}

impl Request {
    /// A POST of `body` to `path`, without credentials.
    pub fn post(path: &str, body: impl Into<Bytes>) -> Request {
        Request {
            path: path.to_string(),
            body: body.into(),
            token: None,
        }
    }

    /// The same request with a bearer token.
    pub fn with_token(mut self, token: Option<&str>) -> Request {
        self.token = token.map(str::to_string);
        self
    }
}

/// What one request got.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// The HTTP status; 0 when the connection failed before an answer.
    pub status: u16,
    /// Whether it carried `Retry-After`.
    pub retry_after: bool,
    /// When it was sent.
    pub sent: Instant,
    /// From the call to the whole body read.
    pub latency: Duration,
}

impl Answer {
    /// A 2xx answer.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A pool of keep-alive connections to one server.
pub struct Load {
    addr: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Load {
    /// Load on the server at `base` (`http://HOST:PORT` or `HOST:PORT`).
    pub fn new(base: &str) -> Arc<Load> {
        Arc::new(Load {
            addr: base.trim_start_matches("http://").to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> std::io::Result<SendRequest<Full<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Sends one request on an idle connection (or a new one), timed from
    /// the call. A connection that failed is dropped, not pooled.
    pub async fn send(self: Arc<Self>, request: &Request) -> Answer {
        self.send_reading(request).await.0
    }

    /// As [`Load::send`], with the answer's body (empty when none came).
    pub async fn send_reading(self: Arc<Self>, request: &Request) -> (Answer, Bytes) {
        let sent = Instant::now();
        let failed = Answer {
            status: 0,
            retry_after: false,
            sent,
            latency: Duration::ZERO,
        };
        let pooled = self.idle.lock().unwrap().pop();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => match self.connect().await {
                Ok(sender) => sender,
                Err(_) => return (failed, Bytes::new()),
            },
        };
        let mut http = hyper::Request::post(request.path.as_str())
            .header("host", self.addr.as_str())
            .header("content-type", "application/json");
        if let Some(token) = &request.token {
            http = http.header("authorization", format!("Bearer {token}"));
        }
        let http = http.body(Full::new(request.body.clone())).expect("a valid request");
        let Ok(response) = sender.send_request(http).await else {
            return (failed, Bytes::new());
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let Ok(body) = response.into_body().collect().await else {
            return (failed, Bytes::new());
        };
        let latency = sent.elapsed();
        self.idle.lock().unwrap().push(sender);
        let answer = Answer {
            status,
            retry_after,
            sent,
            latency,
        };
        (answer, body.to_bytes())
    }

    /// `loops` closed loops for `time`; `next(loop, n)` makes loop `loop`'s
    /// `n`th request. Every answer, in no particular order.
    pub async fn closed<F>(self: &Arc<Self>, loops: usize, time: Duration, next: F) -> Vec<Answer>
    where
        F: Fn(usize, u64) -> Request + Send + Sync + 'static,
    {
        let until = Instant::now() + time;
        let next = Arc::new(next);
        let handles: Vec<_> = (0..loops)
            .map(|index| {
                let (load, next) = (self.clone(), next.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::with_capacity(1 << 12);
                    let mut n = 0;
                    while Instant::now() < until {
                        answers.push(load.clone().send(&next(index, n)).await);
                        n += 1;
                    }
                    answers
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.await.expect("a load loop"));
        }
        all
    }

    /// An open loop: `rate` requests per second for `time`, each sent on
    /// schedule.
    pub async fn open(self: &Arc<Self>, rate: f64, time: Duration, request: Request) -> Vec<Answer> {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let until = Instant::now() + time;
        let request = Arc::new(request);
        let mut pending = Vec::new();
        while Instant::now() < until {
            ticks.tick().await;
            let (load, request) = (self.clone(), request.clone());
            pending.push(tokio::spawn(async move { load.send(&request).await }));
        }
        let mut all = Vec::new();
        for handle in pending {
            all.push(handle.await.expect("a request task"));
        }
        all
    }
}

/// Runs `future` on a one-thread runtime of its own: the load then takes
/// one core and the server the rest.
pub fn on_one_thread<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// The `q` quantile of the answers' latencies (0.5: the median).
pub fn quantile(answers: &[Answer], q: f64) -> Duration {
    let mut latencies: Vec<Duration> = answers.iter().map(|a| a.latency).collect();
    assert!(!latencies.is_empty(), "no answers to take a quantile of");
    latencies.sort_unstable();
    latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
}
