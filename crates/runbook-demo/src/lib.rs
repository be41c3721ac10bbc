//! The simulated environment behind `runbook demo`: everything the SEV1
//! runbook talks to, on loopback, started and stopped together.
//!
//! - a fake Kubernetes API server (`runbook-fakekube`) in a chosen scenario,
//!   its clock ticking fast so rollouts finish in seconds;
//! - a simulated `omendb` service whose `/health`, `/ready` and `/metrics`
//!   follow the fake deployment's real state (healthy only when every
//!   desired replica is available), plus `/insert` and `/query`;
//! - webhook sinks standing in for the status page and the chat channel;
//! - a `backup_tool` script on `PATH`, so the restore branch runs a real
//!   child process.
//!
//! Nothing here reaches the network: every address is 127.0.0.1.

mod backup_tool;
mod service;

use runbook_fakekube::{FakeCluster, RunningFake, Scenario};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use service::WebhookMessage;

/// The scenarios the demo offers, with one line each on what happens.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "healthy",
        "nothing is wrong: diagnostics run, no remedy is needed",
    ),
    (
        "crashloop",
        "pods crash-loop; the runbook restarts the deployment and recovers",
    ),
    (
        "bad-deploy",
        "the latest revision crashes; restart and scale up do not help, rollback does",
    ),
    (
        "oomkilled",
        "pods are OOMKilled; the runbook raises the memory limit to 16Gi",
    ),
    (
        "disk-full",
        "the data volume is full; the runbook asks to delete temporary files",
    ),
    (
        "unrecoverable",
        "nothing helps; the runbook climbs the whole ladder to the restore gate",
    ),
];

/// Errors starting the environment.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The scenario name is not one of [`SCENARIOS`].
    #[error("unknown demo scenario `{0}`; choose one of: {1}")]
    UnknownScenario(String, String),
    /// The fake cluster failed to start.
    #[error("cannot start the fake Kubernetes API server: {0}")]
    Cluster(String),
    /// A file or socket operation failed.
    // The cause is the error's source, which callers print after it.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running simulated environment. Dropping it stops the servers; call
/// [`DemoEnvironment::shutdown`] to stop them cleanly.
pub struct DemoEnvironment {
    fake: Arc<RunningFake>,
    service: service::Handle,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
    messages: Arc<Mutex<Vec<WebhookMessage>>>,
}

/// The namespace of every scenario.
pub const NAMESPACE: &str = "omendb-prod";
/// The deployment of every scenario.
pub const DEPLOYMENT: &str = "prod-omendb";

impl DemoEnvironment {
    /// Starts the environment for `scenario`.
    pub async fn start(scenario: &str) -> Result<Self, DemoError> {
        if !SCENARIOS.iter().any(|(name, _)| *name == scenario) {
            let names: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
            return Err(DemoError::UnknownScenario(
                scenario.to_string(),
                names.join(", "),
            ));
        }
        let loaded = Scenario::builtin(scenario).map_err(|e| DemoError::Cluster(e.to_string()))?;
        // Ten virtual seconds per 100 ms of real time: a rollout that takes a
        // minute in a cluster takes under a second here, yet still passes
        // through every intermediate state the runbook can observe.
        let fake = FakeCluster::builder(loaded)
            .tick(Duration::from_millis(50), Duration::from_secs(5))
            .start()
            .await
            .map_err(|e| DemoError::Cluster(e.to_string()))?;
        let dir = tempfile::Builder::new()
            .prefix("runbook-demo-")
            .tempdir()
            .map_err(|source| DemoError::Io {
                context: "cannot create a temporary directory".into(),
                source,
            })?;
        let kubeconfig = dir.path().join("kubeconfig");
        fake.write_kubeconfig(&kubeconfig)
            .map_err(|e| DemoError::Cluster(e.to_string()))?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let fake = Arc::new(fake);
        let health: service::HealthProbe = {
            let probe = fake.clone();
            Arc::new(move || probe.deployment_healthy(NAMESPACE, DEPLOYMENT))
        };
        let service = service::start(health, messages.clone())
            .await
            .map_err(|source| DemoError::Io {
                context: "cannot start the simulated service".into(),
                source,
            })?;
        let bin_dir = dir.path().join("bin");
        backup_tool::install(&bin_dir, service.addr).map_err(|source| DemoError::Io {
            context: "cannot install the simulated backup_tool".into(),
            source,
        })?;
        Ok(DemoEnvironment {
            fake,
            service,
            dir,
            kubeconfig,
            bin_dir,
            messages,
        })
    }

    /// The fake cluster.
    pub fn cluster(&self) -> &RunningFake {
        &self.fake
    }

    /// The kubeconfig pointing at the fake cluster.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The simulated service's base URL (`http://127.0.0.1:PORT`).
    pub fn service_url(&self) -> String {
        format!("http://{}", self.service.addr)
    }

    /// The address of the simulated service.
    pub fn service_addr(&self) -> SocketAddr {
        self.service.addr
    }

    /// A scratch directory that lives as long as the environment.
    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Param values for the SEV1 runbook that point it at this environment.
    pub fn params(&self) -> Vec<(String, String)> {
        let base = self.service_url();
        vec![
            ("base_url".into(), base.clone()),
            ("metrics_url".into(), base.clone()),
            (
                "status_page_webhook".into(),
                format!("{base}/hooks/status-page"),
            ),
            ("chat_webhook".into(), format!("{base}/hooks/chat")),
            (
                "backup_dir".into(),
                self.dir.path().join("backups").display().to_string(),
            ),
            // The simulated cluster runs about a hundred times faster than a
            // real one, so a rollout that has not finished in 20 s never will.
            ("rollout_timeout".into(), "20s".into()),
        ]
    }

    /// Environment for the run: the kubeconfig, and `PATH` with the
    /// simulated `backup_tool` first.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            ("KUBECONFIG".into(), self.kubeconfig.display().to_string()),
            ("PATH".into(), format!("{}:{path}", self.bin_dir.display())),
        ]
    }

    /// Whether the simulated service is healthy right now.
    pub fn healthy(&self) -> bool {
        self.fake.deployment_healthy(NAMESPACE, DEPLOYMENT)
    }

    /// The messages the webhooks received (status page and chat).
    pub fn messages(&self) -> Vec<WebhookMessage> {
        match self.messages.lock() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Stops every server.
    pub async fn shutdown(self) {
        self.service.stop().await;
        // The service held the only other reference; once it has stopped the
        // cluster can be shut down cleanly (dropping it also stops it).
        if let Ok(fake) = Arc::try_unwrap(self.fake) {
            fake.shutdown().await;
        }
    }
}
