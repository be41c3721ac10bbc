//! `fakekube`: serve a scenario on loopback for people, the demo and CI.

use anyhow::Context;
use clap::Parser;
use runbook_fakekube::{FakeCluster, Scenario};
use std::path::PathBuf;
use std::time::Duration;

/// A fake Kubernetes API server on 127.0.0.1 with a simulated cluster.
#[derive(Debug, Parser)]
#[command(name = "fakekube", version)]
struct Args {
    /// A built-in scenario name or a scenario YAML file.
    #[arg(long, default_value = "healthy")]
    scenario: String,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write a kubeconfig for the server to this path.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Real time per simulated second (e.g. 100ms runs the cluster 10x fast).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// The Kubernetes version to report from /version.
    #[arg(long, default_value = runbook_fakekube::DEFAULT_GIT_VERSION)]
    kube_version: String,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    list_scenarios: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.list_scenarios {
        for name in Scenario::builtin_names() {
            let scenario = Scenario::builtin(name)
                .with_context(|| format!("failed to load built-in scenario `{name}`"))?;
            println!("{name}\t{}", scenario.description);
        }
        return Ok(());
    }
    let scenario = Scenario::load(&args.scenario)
        .with_context(|| format!("failed to load scenario `{}`", args.scenario))?;
    let description = scenario.description.clone();
    // Virtual time runs faster than real time; starting a day in the past
    // keeps timestamps that kubectl compares with its own clock in the past.
    let fake = FakeCluster::builder(scenario)
        .port(args.port)
        .git_version(args.kube_version)
        .start_time(chrono::Utc::now() - chrono::Duration::days(1))
        .tick(args.tick, Duration::from_secs(1))
        .start()
        .await
        .context("failed to start the fake apiserver")?;
    if let Some(path) = &args.kubeconfig_out {
        fake.write_kubeconfig(path)
            .with_context(|| format!("failed to write kubeconfig `{}`", path.display()))?;
        eprintln!("fakekube: kubeconfig written to {}", path.display());
    }
    eprintln!("fakekube: scenario `{}`: {description}", args.scenario);
    println!("{}", fake.url());
    wait_for_signal().await?;
    eprintln!("fakekube: shutting down");
    fake.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("failed to install the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("failed to wait for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
