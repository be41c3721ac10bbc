//! `exec`: runs a command in a container over the WebSocket exec
//! subresource, picking the pod of a workload as kubectl does (most active
//! first) and the container by the default-container annotation.

use super::{ActionResult, Call, Failure};
use crate::error::KubectlError;
use crate::json::get_str;
use crate::pods;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use runbook_engine::{Outputs, StepContext, Stream};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Each of stdout and stderr keeps at most its last 1 MiB, like shell steps.
const MAX_OUTPUT: usize = 1 << 20;

/// `exec`.
pub async fn exec(call: &Call<'_>) -> ActionResult {
    if call.fields.command.is_empty() {
        return Err(
            KubectlError::Invalid("`exec` needs a non-empty `command` list".to_string()).into(),
        );
    }
    let (rt, name) = call.named().await?;
    let object = call.cluster.get(&rt, &call.namespace, &name).await?;
    let pod = if rt.group.is_empty() && rt.kind == "Pod" {
        object
    } else {
        let mut list = call
            .pods_of(&object, &format!("{} \"{name}\"", rt.noun()))
            .await?;
        pods::sort_for_exec(&mut list);
        list.swap_remove(0)
    };
    let pod_name = get_str(&pod, "/metadata/name")
        .unwrap_or_default()
        .to_string();
    let phase = get_str(&pod, "/status/phase").unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(KubectlError::Refused(format!(
            "cannot exec into a container in a completed pod ({pod_name}); current phase is {phase}"
        ))
        .into());
    }
    let container = match &call.fields.container {
        Some(c) => c.clone(),
        None => pods::default_container(&pod).map_err(KubectlError::Refused)?,
    };
    let pods_rt = call.cluster.resolve("pods").await?;
    let op = call.cluster.op(
        "create",
        &pods_rt,
        &call.namespace,
        Some(&pod_name),
        Some("exec"),
    );
    let api: Api<Pod> = Api::namespaced(call.cluster.client.clone(), &call.namespace);
    let params = AttachParams::default()
        .container(container.clone())
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut process = api
        .exec(&pod_name, call.fields.command.clone(), &params)
        .await
        .map_err(|e| call.cluster.error(e, &op))?;
    let status = process.take_status();
    let stdout = process.stdout();
    let stderr = process.stderr();
    let (out_text, err_text) = tokio::join!(
        collect(stdout, call.ctx, Stream::Stdout),
        collect(stderr, call.ctx, Stream::Stderr)
    );
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    // The streams are drained; a join error here only means the connection
    // closed without a clean close frame, which the status already covers.
    let _ = process.join().await;
    let mut out = Outputs::new();
    out.insert("stdout".into(), Value::String(out_text));
    out.insert("stderr".into(), Value::String(err_text));
    let where_ = format!("pod/{pod_name} container {container}");
    let Some(status) = status else {
        out.insert("exit_code".into(), Value::Null);
        return Err(Failure {
            error: KubectlError::Refused(format!(
                "exec in {where_} ended without reporting an exit status"
            )),
            outputs: out,
        });
    };
    if status.status.as_deref() == Some("Success") {
        out.insert("exit_code".into(), Value::from(0));
        return Ok(out);
    }
    let code = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|causes| {
            causes
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
        })
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.trim().parse::<i64>().ok());
    out.insert("exit_code".into(), code.map_or(Value::Null, Value::from));
    let error = match code {
        Some(code) => KubectlError::Refused(format!(
            "command {:?} exited with code {code} in {where_}",
            call.fields.command
        )),
        None => KubectlError::Refused(format!(
            "exec in {where_} failed: {}",
            status
                .message
                .clone()
                .filter(|m| !m.is_empty())
                .or_else(|| status.reason.clone())
                .unwrap_or_else(|| "unknown error".to_string())
        )),
    };
    Err(Failure {
        error,
        outputs: out,
    })
}

/// Reads a stream line by line, passing each line on as live output, and
/// keeps the last [`MAX_OUTPUT`] bytes.
async fn collect(
    stream: Option<impl AsyncRead + Unpin>,
    ctx: &StepContext,
    which: Stream,
) -> String {
    let Some(stream) = stream else {
        return String::new();
    };
    let mut reader = BufReader::new(stream);
    let mut text = String::new();
    let mut line = Vec::new();
    let mut cut = false;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let s = String::from_utf8_lossy(&line);
                ctx.output_line(which, s.trim_end_matches(['\n', '\r']));
                text.push_str(&s);
                if text.len() > MAX_OUTPUT {
                    let mut start = text.len() - MAX_OUTPUT;
                    while !text.is_char_boundary(start) {
                        start += 1;
                    }
                    text.drain(..start);
                    cut = true;
                }
            }
        }
    }
    if cut {
        text.insert_str(0, "[output cut: only the last 1 MiB is kept]\n");
    }
    text
}
