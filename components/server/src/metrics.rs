//! A node's Prometheus metrics and the `/metrics` endpoint.
//!
//! Each node has a registry of its own: every name starts with `regionstore_` and every
//! sample carries the node's `store` label. The store registers its counters, histograms and
//! gauges in it (see `raftstore::metrics`, and `local_reader::ReadCounters` for the read
//! paths); the node adds its requests by operation and result. [`encode`] merges the
//! registries of the nodes of one process into one exposition, and [`MetricsServer`] serves
//! it over HTTP (with a `/status` page, for the server process).

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Instant,
};

use prometheus::{
    exponential_buckets, proto::MetricFamily, Encoder, HistogramOpts, HistogramVec, IntCounterVec,
    Opts, Registry, TextEncoder,
};

use crate::{Error, Result};

/// The registry of store `store_id`: names prefixed `regionstore_`, samples labelled
/// `store="<id>"`.
pub fn store_registry(store_id: u64) -> Registry {
    let labels = HashMap::from([("store".to_string(), store_id.to_string())]);
    Registry::new_custom(Some("regionstore".into()), Some(labels)).expect("valid prefix and label")
}

/// What a node counts of the requests it is given.
#[derive(Clone)]
pub(crate) struct NodeMetrics {
    requests: IntCounterVec,
    durations: HistogramVec,
}

impl NodeMetrics {
    /// The node's request metrics, registered in `registry`.
    pub(crate) fn register(registry: &Registry) -> Result<NodeMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests to the node by operation and result (ok, or the error's kind).",
            ),
            &["op", "result"],
        )
        .expect("valid metric");
        let buckets = exponential_buckets(0.000_005, 2.0, 22).expect("valid buckets");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "From a request's call to its answer, by operation.",
            )
            .buckets(buckets),
            &["op"],
        )
        .expect("valid metric");
        let refused = |e: prometheus::Error| Error::Open(format!("metrics: {e}"));
        registry.register(Box::new(requests.clone())).map_err(refused)?;
        registry.register(Box::new(durations.clone())).map_err(refused)?;
        Ok(NodeMetrics { requests, durations })
    }

    /// Records the answer `res` to an `op` called at `start`.
    pub(crate) fn answered<T>(&self, op: &str, start: Instant, res: &Result<T>) {
        let result = match res {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.requests.with_label_values(&[op, result]).inc();
        self.durations.with_label_values(&[op]).observe(start.elapsed().as_secs_f64());
    }
}

/// The text exposition of `registries` together: families of the same name are merged, so
/// several nodes of one process make one valid page.
pub fn encode(registries: &[Registry]) -> String {
    let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for registry in registries {
        for family in registry.gather() {
            match families.get_mut(family.get_name()) {
                Some(merged) => {
                    for m in family.get_metric() {
                        merged.mut_metric().push(m.clone());
                    }
                }
                None => {
                    families.insert(family.get_name().to_string(), family);
                }
            }
        }
    }
    let families: Vec<MetricFamily> = families.into_values().collect();
    let mut buf = Vec::new();
    TextEncoder::new().encode(&families, &mut buf).expect("text encoding does not fail");
    String::from_utf8(buf).expect("the text format is UTF-8")
}

/// Serves `GET /metrics` until dropped: one thread takes requests, each answered on a
/// thread of its own, so a client that reads slowly (or never) holds neither the others nor
/// the drop.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks a free port) and answers `/metrics` with what `page`
    /// returns at that moment.
    pub fn start(
        addr: SocketAddr,
        page: impl Fn() -> String + Send + Sync + 'static,
    ) -> std::io::Result<MetricsServer> {
        Self::start_with_status(addr, page, || "{}".to_string())
    }

    /// [`Self::start`], answering `/status` too, with the JSON `status` returns.
    pub fn start_with_status(
        addr: SocketAddr,
        page: impl Fn() -> String + Send + Sync + 'static,
        status: impl Fn() -> String + Send + Sync + 'static,
    ) -> std::io::Result<MetricsServer> {
        let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
        let server = Arc::new(server);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
        let (serving, stopping) = (server.clone(), Arc::new(AtomicBool::new(false)));
        let stop = stopping.clone();
        let page: Arc<Pages> =
            Arc::new(Pages { metrics: Box::new(page), status: Box::new(status) });
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || serve(&serving, page, &stop))?;
        Ok(MetricsServer { server, addr, stopping, thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What the endpoint serves.
struct Pages {
    metrics: Box<dyn Fn() -> String + Send + Sync>,
    status: Box<dyn Fn() -> String + Send + Sync>,
}

fn serve(server: &tiny_http::Server, page: Arc<Pages>, stopping: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(request) => {
                let page = page.clone();
                let answer = move || respond(request, &page);
                if let Err(e) = std::thread::Builder::new().name("metrics-req".into()).spawn(answer)
                {
                    eprintln!("metrics endpoint: cannot answer a request: {e}");
                }
            }
            Err(e) => {
                if !stopping.load(Ordering::Acquire) {
                    eprintln!("metrics endpoint: no longer serving: {e}");
                }
                return;
            }
        }
    }
}

fn respond(request: tiny_http::Request, pages: &Pages) {
    let header = |value: &[u8]| {
        tiny_http::Header::from_bytes(&b"Content-Type"[..], value).expect("a valid header")
    };
    let response = match request.url() {
        "/metrics" => tiny_http::Response::from_string((pages.metrics)())
            .with_header(header(b"text/plain; version=0.0.4; charset=utf-8")),
        "/status" => tiny_http::Response::from_string((pages.status)())
            .with_header(header(b"application/json")),
        _ => tiny_http::Response::from_string("not found: try /metrics or /status\n")
            .with_status_code(404),
    };
    // A client that went away is its own business.
    let _ = request.respond(response);
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
