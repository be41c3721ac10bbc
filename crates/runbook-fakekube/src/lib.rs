//! A stateful fake Kubernetes API server on loopback, for tests, the demo and
//! users' CI.
//!
//! It speaks plain HTTP on `127.0.0.1`, stores objects as unstructured JSON,
//! and is good enough for both the real `kubectl` (1.27–1.33) and kube-rs:
//! discovery, CRUD, LIST/WATCH with selectors, the `scale`, `status`, `log`,
//! `exec` (WebSocket v4/v5) and `eviction` subresources, metrics.k8s.io,
//! strategic/merge/JSON patches, server-side dry run, and a simulated
//! deployment controller and kubelet on a virtual clock.
//!
//! ```no_run
//! # async fn demo() -> Result<(), runbook_fakekube::Error> {
//! use runbook_fakekube::{FakeCluster, Kind, Scenario};
//! let fake = FakeCluster::start(Scenario::builtin("crashloop")?).await?;
//! fake.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?;
//! // … run kubectl or the engine against it …
//! fake.advance(std::time::Duration::from_secs(30));
//! assert!(!fake.deployment_healthy("omendb-prod", "prod-omendb"));
//! let pods = fake.list(Kind::Pod, Some("omendb-prod"));
//! # let _ = pods;
//! fake.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Virtual time
//!
//! Nothing moves until the clock does: tests call [`RunningFake::step`] or
//! [`RunningFake::advance`]; the `fakekube` binary (and tests that run a
//! blocking client) use [`RunningFake::start_ticker`]. Writes run the
//! controllers once at the current time, so a new ReplicaSet appears as soon
//! as a template changes, but pods need time to start, crash or become Ready.
//!
//! # Scenario format
//!
//! A scenario is a YAML document (unknown keys are errors):
//!
//! ```yaml
//! extends: healthy            # optional: start from a built-in scenario (JSON merge patch; lists replace)
//! name: my-scenario
//! description: what it shows
//! remedy: what fixes it
//! namespace: omendb-prod      # where namespaced objects go (default: default)
//! seed: 42                    # names and uids derive from it
//! warmup_seconds: 120         # virtual seconds simulated before serving
//! nodes:
//!   - {name: node-a, ready: true, unschedulable: false, cpu: "8", memory: 32Gi, usage: {cpu: 400m, memory: 2Gi}}
//! config_maps:
//!   - {name: omendb-config, data: {KEY: value}}
//! persistent_volume_claims:
//!   - {name: omendb-data, capacity: 100Gi, disk_used: 41Gi, reclaimable: 12Gi, storage_class: standard-rwo}
//! deployments:
//!   - name: prod-omendb
//!     labels: {app: omendb}    # deployment labels, selector and pod labels
//!     container: omendb
//!     replicas: 3
//!     port: 3000               # readiness probe GET /ready on this port
//!     config_map: omendb-config            # optional envFrom
//!     volume: {claim: omendb-data, mount_path: /var/lib/omendb}   # optional
//!     revisions:               # oldest first; the last is current
//!       - {image: "ghcr.io/omendb/omendb:0.9.1", memory_request: 8Gi, memory_limit: 16Gi,
//!          cpu_request: 500m, env: {K: v}, change_cause: "deploy 0.9.1"}
//! pod_rules:                   # per container, every tick; first match wins; no match = healthy
//!   - match:                   # all given conditions must hold; omit `match` to match everything
//!       image: "ghcr.io/omendb/omendb:0.10.*"   # `*` wildcard
//!       container: omendb
//!       memory_limit_below: 16Gi
//!       initial_replicaset: true   # pod's ReplicaSet was current at scenario start
//!       disk_full: true            # a mounted PVC has used >= capacity
//!       node: node-a
//!       labels: {app: omendb}
//!     behaviour: crash-loop    # healthy | crash-loop | oom-killed | image-pull-back-off | never-ready
//!     run_seconds: 4           # crash-loop / oom-killed: time before exiting
//!     exit_code: 1             # crash-loop (oom-killed is always 137)
//!     ready_after_seconds: 2   # healthy: time from start to Ready
//!     logs: ["line with {pod} {container} {image} {node} {namespace} {restart}"]
//!     metrics: {cpu: 900m, memory: 3980Mi}
//!     message: "Readiness probe failed: …"      # never-ready event text / image pull error
//! logs:                        # healthy log lines by container name, `*` for any
//!   "*": ["omendb starting on {node}"]
//! metrics: {cpu: 320m, memory: 6Gi}             # default usage per running container
//! exec:                        # first match wins; unmatched: echo/true/false/hostname/sh -c "exit N", else 127
//!   - argv: [curl, -f, "localhost:3000/ready"]   # `*` inside a token, a final `**` matches the rest
//!     container: omendb        # optional
//!     when: {pod_ready: true, disk_full: false}  # optional
//!     stdout: "ok\n"           # placeholders: {df} {pod} {container} {node} {namespace}
//!     stderr: ""
//!     exit_code: 0
//!     free_disk: 45Gi          # optional effect: release up to this much of the PVC's reclaimable space
//! ```
//!
//! Pod health: a container runs through ContainerCreating → Running (Ready
//! after `ready_after_seconds`) for `healthy`; `crash-loop` and `oom-killed`
//! exit after `run_seconds`, set `lastState.terminated` (Error or OOMKilled/137),
//! count restarts and wait in CrashLoopBackOff with the kubelet's back-off
//! (10 s doubling to 5 min); `image-pull-back-off` alternates ErrImagePull and
//! ImagePullBackOff; `never-ready` runs with the Ready condition False. Pods on
//! a NotReady node are not Ready. A pod is available once Ready for the
//! ReplicaSet's `minReadySeconds`.
mod cluster;
mod controller;
mod defaults;
mod error;
mod fault;
mod patch;
mod pods;
mod quantity;
mod resources;
mod scenario;
mod selector;
mod server;
mod store;
mod table;

pub use controller::{deployment_healthy, rollout_complete};
pub use error::Error;
pub use fault::{Fault, FaultKind, JournalEntry};
pub use quantity::parse_quantity;
pub use resources::Kind;
pub use scenario::{
    Behaviour, ConfigMapSpec, DeploymentSpec, ExecRule, ExecWhen, Matcher, NodeSpec, PodRule,
    PvcSpec, RevisionSpec, Scenario, Usage, VolumeSpec,
};

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The `gitVersion` reported by `/version` unless configured otherwise.
pub const DEFAULT_GIT_VERSION: &str = "v1.32.4";

/// The bearer token written into kubeconfigs; the fake accepts any.
pub const DUMMY_TOKEN: &str = "fakekube-dummy-token";

/// Entry point: start a fake cluster for a scenario.
pub struct FakeCluster;

impl FakeCluster {
    /// Seeds `scenario` and serves it on `127.0.0.1` at a free port.
    pub async fn start(scenario: Scenario) -> Result<RunningFake, Error> {
        Self::builder(scenario).start().await
    }

    /// A builder for non-default settings.
    pub fn builder(scenario: Scenario) -> Builder {
        Builder {
            scenario,
            git_version: DEFAULT_GIT_VERSION.into(),
            port: 0,
            tick: None,
            start_time: None,
        }
    }
}

/// Settings for [`FakeCluster::builder`].
pub struct Builder {
    scenario: Scenario,
    git_version: String,
    port: u16,
    tick: Option<(Duration, Duration)>,
    start_time: Option<DateTime<Utc>>,
}

impl Builder {
    /// The `gitVersion` to report (kubectl's dispatcher picks its minor version from it).
    pub fn git_version(mut self, version: impl Into<String>) -> Self {
        self.git_version = version.into();
        self
    }

    /// The port to bind on 127.0.0.1 (0 picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Advance virtual time by `virtual_step` every `real_period`, from the start.
    pub fn tick(mut self, real_period: Duration, virtual_step: Duration) -> Self {
        self.tick = Some((real_period, virtual_step));
        self
    }

    /// The virtual time at which the scenario starts serving (default: one
    /// hour before now, so ages shown by kubectl stay positive for a while).
    pub fn start_time(mut self, at: DateTime<Utc>) -> Self {
        self.start_time = Some(at);
        self
    }

    /// Seeds the scenario, binds, and starts serving.
    pub async fn start(self) -> Result<RunningFake, Error> {
        let name = self.scenario.name.clone();
        let warmup = chrono::Duration::seconds(self.scenario.warmup_seconds as i64);
        let start = self
            .start_time
            .unwrap_or_else(|| Utc::now() - chrono::Duration::hours(1));
        let namespace = self.scenario.namespace.clone();
        let mut cluster = cluster::Cluster::new(self.scenario, start - warmup, self.git_version);
        cluster.seed().map_err(|e| Error::Seed {
            name,
            message: e.message,
        })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(server::Shared {
            cluster: Mutex::new(cluster),
            shutdown: shutdown_rx.clone(),
        });
        let app = server::router(shared.clone());
        let mut stop = shutdown_rx;
        let server = tokio::spawn(async move {
            let graceful = async move {
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            };
            // Serving ends only at shutdown; an accept error then has nobody to report to.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(graceful)
                .await;
        });
        let fake = RunningFake {
            shared,
            addr,
            namespace,
            shutdown_tx,
            server: Mutex::new(Some(server)),
            ticker: Mutex::new(None),
        };
        if let Some((real, step)) = self.tick {
            fake.start_ticker(real, step);
        }
        Ok(fake)
    }
}

/// A running fake apiserver. Dropping it stops serving.
pub struct RunningFake {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    namespace: String,
    shutdown_tx: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

fn take_handle(slot: &Mutex<Option<JoinHandle<()>>>) -> Option<JoinHandle<()>> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

impl RunningFake {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The scenario's namespace (the kubeconfig context's default).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A kubeconfig for this server: one cluster, one context with the
    /// scenario's namespace, token auth with [`DUMMY_TOKEN`].
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fakekube\n  cluster:\n    server: {}\n\
             contexts:\n- name: fakekube\n  context:\n    cluster: fakekube\n    user: fakekube\n    namespace: {}\n\
             current-context: fakekube\nusers:\n- name: fakekube\n  user:\n    token: {DUMMY_TOKEN}\n",
            self.url(),
            self.namespace
        )
    }

    /// Writes [`RunningFake::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.kubeconfig()).map_err(|source| Error::WriteKubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Advances virtual time by one second.
    pub fn step(&self) {
        self.advance(Duration::from_secs(1));
    }

    /// Advances virtual time, one simulated second at a time.
    pub fn advance(&self, by: Duration) {
        let mut cluster = self.shared.lock();
        for _ in 0..by.as_secs() {
            cluster.tick(chrono::Duration::seconds(1));
        }
        let rest = by.subsec_millis();
        if rest > 0 {
            cluster.tick(chrono::Duration::milliseconds(i64::from(rest)));
        }
    }

    /// The virtual clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.lock().now
    }

    /// One object; `namespace` is ignored for cluster-scoped kinds.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let ns = if kind.info().namespaced {
            namespace
        } else {
            ""
        };
        self.shared.lock().store.get(kind, ns, name).cloned()
    }

    /// Objects of a kind in one namespace, or everywhere with `None`.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Value> {
        self.shared.lock().store.list_owned(kind, namespace)
    }

    /// Every request received so far.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.lock().journal.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_journal(&self) {
        self.shared.lock().journal.clear();
    }

    /// Adds a fault rule; earlier rules match first.
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Whether the deployment exists and is healthy (see [`deployment_healthy`]).
    pub fn deployment_healthy(&self, namespace: &str, name: &str) -> bool {
        self.get(Kind::Deployment, namespace, name)
            .is_some_and(|d| deployment_healthy(&d))
    }

    /// Advances virtual time by `virtual_step` every `real_period` until
    /// stopped; replaces a running ticker.
    pub fn start_ticker(&self, real_period: Duration, virtual_step: Duration) {
        self.stop_ticker();
        let shared = self.shared.clone();
        let handle = tokio::spawn(async move {
            let mut interval = tokio::time::interval(real_period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            interval.tick().await;
            loop {
                interval.tick().await;
                let mut cluster = shared.lock();
                let mut left = virtual_step;
                while left >= Duration::from_secs(1) {
                    cluster.tick(chrono::Duration::seconds(1));
                    left -= Duration::from_secs(1);
                }
                if !left.is_zero() {
                    cluster.tick(chrono::Duration::milliseconds(left.as_millis() as i64));
                }
            }
        });
        *self
            .ticker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
    }

    /// Stops the background ticker, if any.
    pub fn stop_ticker(&self) {
        if let Some(handle) = take_handle(&self.ticker) {
            handle.abort();
        }
    }

    /// Stops serving: open watches end, then the server finishes in-flight
    /// requests (for at most two seconds).
    pub async fn shutdown(self) {
        self.stop_ticker();
        let _ = self.shutdown_tx.send(true);
        if let Some(server) = take_handle(&self.server) {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningFake {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        for slot in [&self.ticker, &self.server] {
            if let Some(handle) = take_handle(slot) {
                handle.abort();
            }
        }
    }
}
