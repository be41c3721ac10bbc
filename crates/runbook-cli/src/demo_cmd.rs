//! `runbook demo`: the SEV1 runbook, end to end, against a simulated
//! environment on loopback (a fake Kubernetes API server in a chosen
//! scenario, a simulated service, webhook sinks and a `backup_tool` script).
//!
//! The run itself is a real `runbook run` in a child process, so what the
//! demo shows is exactly what an SRE would see; the environment lives in
//! this process for as long as the run does.

use crate::exit::ExitCode;
use anyhow::Context as _;
use runbook_demo::{DemoEnvironment, SCENARIOS};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// The SEV1 runbook shipped in the binary, so the demo works from any
/// directory.
const SEV1_RUNBOOK: &str = include_str!("../../../runbooks/sev1-service-down.yaml");

/// Arguments of `runbook demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// What is wrong with the simulated service.
    #[arg(default_value = "crashloop", value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS.iter().map(|(name, _)| *name)))]
    pub scenario: String,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Approve every gate without asking (otherwise you are prompted, as in
    /// a real incident).
    #[arg(long)]
    pub approve_all: bool,
    /// `json`: NDJSON events on stdout.
    #[arg(long, value_enum, default_value_t = crate::run_cmd::OutputFormat::Human)]
    pub output: crate::run_cmd::OutputFormat,
    /// Where the run is recorded (default: the usual state directory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Run this runbook instead of the built-in SEV1 runbook. It gets the
    /// environment's values for the params it declares (base_url,
    /// metrics_url, the webhooks, backup_dir, rollout_timeout); --set gives
    /// the others.
    #[arg(long, value_name = "FILE")]
    pub runbook: Option<PathBuf>,
    /// Set a param (repeatable); wins over the environment's value.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        let mut stdout = std::io::stdout().lock();
        for (name, what) in SCENARIOS {
            writeln!(stdout, "{name:<14} {what}")?;
        }
        return Ok(ExitCode::Success);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let env = DemoEnvironment::start(&args.scenario)
        .await
        .context("cannot start the simulated environment")?;
    // Let the scenario's fault show itself (pods crash, restart counts
    // climb) before the runbook looks, as it would have by the time anyone
    // was paged.
    env.cluster().advance(Duration::from_secs(180));

    let runbook = match &args.runbook {
        Some(path) => path.clone(),
        None => {
            let path = env.work_dir().join("sev1-service-down.yaml");
            std::fs::write(&path, SEV1_RUNBOOK)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            path
        }
    };
    let description = SCENARIOS
        .iter()
        .find(|(name, _)| *name == args.scenario)
        .map_or("", |(_, what)| *what);
    // The scenarios' lines tell what the SEV1 runbook does; another runbook
    // does what it says.
    if args.runbook.is_some() {
        errln!(
            "runbook demo: scenario `{}` (with the SEV1 runbook: {description})",
            args.scenario
        );
    } else {
        errln!("runbook demo: scenario `{}` — {description}", args.scenario);
    }
    errln!(
        "  simulated Kubernetes API  {} (namespace omendb-prod)",
        env.cluster().url()
    );
    errln!("  simulated omendb service  {}", env.service_url());
    errln!("  kubeconfig                {}", env.kubeconfig().display());
    errln!("  runbook                   {}", runbook.display());
    if !args.approve_all {
        errln!("  gates ask you; rerun with --approve-all to approve them all");
    }
    errln!();

    let exe = std::env::current_exe().context("cannot find the runbook executable")?;
    let mut command = tokio::process::Command::new(exe);
    command.arg("run").arg(&runbook);
    // The environment's values are for the SEV1 runbook's params; another
    // runbook gets those it declares, since `run` refuses unknown ones.
    let declared = declared_params(&runbook);
    for (name, value) in env.params() {
        if declared.as_ref().is_none_or(|names| names.contains(&name)) {
            command.arg("--set").arg(format!("{name}={value}"));
        }
    }
    // After the environment's: a later --set wins.
    for set in &args.sets {
        command.arg("--set").arg(set);
    }
    if args.approve_all {
        command.arg("--approve-all");
    }
    if args.output == crate::run_cmd::OutputFormat::Json {
        command.arg("--output").arg("json");
    }
    if let Some(dir) = &args.state_dir {
        command.arg("--state-dir").arg(dir);
    }
    command.envs(env.env());
    let mut child = command.spawn().context("cannot start `runbook run`")?;

    // Ctrl-C reaches the child too (same process group): it cancels, rolls
    // back and exits 130. This process waits for that instead of dying first
    // and pulling the environment out from under the rollbacks. SIGTERM is
    // sent to this process alone (by a supervisor, `timeout`), so it is
    // passed on to the run, which handles it the same way.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for `runbook run`")?,
            _ = tokio::signal::ctrl_c() => continue,
            _ = terminate.recv() => {
                if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
    };

    // A runbook refused before it ran (exit 2) did nothing to report on.
    if status.code() == Some(2) {
        env.shutdown().await;
        return Ok(ExitCode::Usage);
    }
    errln!();
    errln!("runbook demo: what the outside world saw");
    for message in env.messages() {
        let text = message
            .body
            .get("text")
            .or_else(|| message.body.get("message"))
            .and_then(|v| v.as_str())
            .map_or_else(|| message.body.to_string(), str::to_string);
        errln!("  [{}] {text}", message.hook);
    }
    errln!(
        "  service after the run: {}",
        if env.healthy() {
            "healthy"
        } else {
            "still down"
        }
    );
    env.shutdown().await;
    Ok(match status.code() {
        Some(0) => ExitCode::Success,
        Some(2) => ExitCode::Usage,
        Some(130) | None => ExitCode::Interrupted,
        Some(_) => ExitCode::Failure,
    })
}

/// The params `path` declares, or `None` when it does not load (then `run`
/// reports why, with every `--set` in view).
fn declared_params(path: &std::path::Path) -> Option<Vec<String>> {
    let (_, loaded) = runbook_model::load_file(path);
    loaded
        .runbook
        .map(|runbook| runbook.params.keys().cloned().collect())
}
