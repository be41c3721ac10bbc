//! Finding the cluster as kubectl does: the step's `kubeconfig` field, else
//! `$KUBECONFIG` (a list of files, merged; the first to set a value wins),
//! else `~/.kube/config`, else the in-cluster service account. `context`
//! picks a context (default: the current one); the namespace defaults to the
//! context's, else `default`.

use crate::error::{Endpoint, KubectlError};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Where the configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Files to read and merge, in precedence order.
    Files(Vec<PathBuf>),
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` and the token).
    InCluster,
    /// `$KUBECONFIG` is set but names no file that exists. kubectl then
    /// reads no kubeconfig at all (not `~/.kube/config`); a step refuses
    /// to guess, since the fallback could be another cluster.
    EnvNamesNoFile(Vec<PathBuf>),
}

/// Chooses the source like kubectl's loading rules. `field` is the step's
/// `kubeconfig` (used alone, even if missing, so a typo is an error rather
/// than a silent fallback); files of `$KUBECONFIG` that do not exist are
/// skipped, as client-go does, and a `$KUBECONFIG` that names files means
/// `~/.kube/config` is not read, even when none of them exists.
pub fn choose_source(
    field: Option<&str>,
    kubeconfig_env: Option<&OsStr>,
    home: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> Source {
    if let Some(path) = field.map(str::trim).filter(|p| !p.is_empty()) {
        return Source::Files(vec![expand_home(path, home)]);
    }
    if let Some(value) = kubeconfig_env {
        let named: Vec<PathBuf> = std::env::split_paths(value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let existing: Vec<PathBuf> = named.iter().filter(|p| exists(p)).cloned().collect();
        match (existing.is_empty(), named.is_empty()) {
            (false, _) => return Source::Files(existing),
            (true, false) => return Source::EnvNamesNoFile(named),
            (true, true) => {}
        }
    }
    if let Some(home) = home {
        let default = home.join(".kube").join("config");
        if exists(&default) {
            return Source::Files(vec![default]);
        }
    }
    Source::InCluster
}

fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// What the files of `source` hold now, as a number that changes when any
/// of them does: a step that switches the current context (`kubectl config
/// use-context`, `aws eks update-kubeconfig`) must send the next steps to
/// the new cluster, as kubectl, which reads the files at every call, would.
/// A file that cannot be read counts as its error.
pub fn fingerprint(source: &Source) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Source::Files(paths) = source {
        for path in paths {
            match std::fs::read(path) {
                Ok(bytes) => bytes.hash(&mut hasher),
                Err(error) => error.kind().hash(&mut hasher),
            }
        }
    }
    hasher.finish()
}

/// The current user's home directory.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A loaded configuration, ready to build a client.
pub struct Loaded {
    /// The kube-rs configuration.
    pub config: kube::Config,
    /// Server and context, for messages.
    pub endpoint: Endpoint,
}

fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads the configuration from `source`, with `context` or the current one.
pub async fn load(source: &Source, context: Option<&str>) -> Result<Loaded, KubectlError> {
    match source {
        Source::EnvNamesNoFile(paths) => Err(KubectlError::Config(format!(
            "$KUBECONFIG is {}, and no such file exists; kubectl would not fall back to \
             ~/.kube/config either: set $KUBECONFIG to an existing file, or unset it",
            describe(paths)
        ))),
        Source::InCluster => {
            if context.is_some() {
                return Err(KubectlError::Config(
                    "`context` was given, but no kubeconfig was found (no `kubeconfig` field, no \
                     $KUBECONFIG, no ~/.kube/config), so only the in-cluster configuration is available"
                        .to_string(),
                ));
            }
            let config = kube::Config::incluster().map_err(|e| {
                KubectlError::Config(format!(
                    "no Kubernetes configuration: no `kubeconfig` field, $KUBECONFIG unset or naming no \
                     existing file, no ~/.kube/config, and not running in a cluster ({})",
                    crate::error::cause_chain(&e)
                ))
            })?;
            let endpoint = Endpoint {
                server: config.cluster_url.to_string(),
                context: "in-cluster".to_string(),
            };
            Ok(Loaded { config, endpoint })
        }
        Source::Files(paths) => {
            let mut merged: Option<Kubeconfig> = None;
            for path in paths {
                if !path.exists() {
                    // kube's own message quotes the path twice. A relative
                    // path is taken from the working directory, which may
                    // not be where the runbook's author had in mind.
                    let from = if path.is_relative() {
                        std::env::current_dir()
                            .map(|dir| format!(" (relative to {})", dir.display()))
                            .unwrap_or_default()
                    } else {
                        String::new()
                    };
                    return Err(KubectlError::Config(format!(
                        "kubeconfig {} does not exist{from}",
                        path.display()
                    )));
                }
                // kube reads the file whole: a FIFO or `/dev/zero` would
                // block it or fill memory.
                if !path.is_file() {
                    return Err(KubectlError::Config(format!(
                        "kubeconfig {} is not a regular file",
                        path.display()
                    )));
                }
                let one = Kubeconfig::read_from(path).map_err(|e| {
                    KubectlError::Config(format!(
                        "cannot load kubeconfig {}: {}",
                        path.display(),
                        crate::error::cause_chain(&e)
                    ))
                })?;
                merged = Some(match merged {
                    None => one,
                    Some(m) => m.merge(one).map_err(|e| {
                        KubectlError::Config(format!(
                            "cannot merge kubeconfig files {}: {e}",
                            describe(paths)
                        ))
                    })?,
                });
            }
            let kubeconfig = merged.unwrap_or_default();
            let name = match context {
                Some(c) => c.to_string(),
                // kubectl treats `current-context: ""` as not set.
                None => kubeconfig
                    .current_context
                    .clone()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| {
                        KubectlError::Config(format!(
                            "kubeconfig {} has no current-context; set `context` on the step",
                            describe(paths)
                        ))
                    })?,
            };
            let Some(named) = kubeconfig.contexts.iter().find(|c| c.name == name) else {
                let known: Vec<&str> = kubeconfig
                    .contexts
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(KubectlError::Config(format!(
                    "context \"{name}\" not found in kubeconfig {} (contexts: {})",
                    describe(paths),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            let cluster_name = named.context.as_ref().map(|c| c.cluster.clone());
            let server = cluster_name
                .as_ref()
                .and_then(|cn| kubeconfig.clusters.iter().find(|c| &c.name == cn))
                .and_then(|c| c.cluster.as_ref())
                .and_then(|c| c.server.clone())
                .unwrap_or_else(|| "(no server)".to_string());
            let options = KubeConfigOptions {
                context: Some(name.clone()),
                ..Default::default()
            };
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| {
                    KubectlError::Config(format!(
                        "cannot use context \"{name}\" (server {server}) of kubeconfig {}: {}",
                        describe(paths),
                        crate::error::cause_chain(&e)
                    ))
                })?;
            Ok(Loaded {
                endpoint: Endpoint {
                    server: config
                        .cluster_url
                        .to_string()
                        .trim_end_matches('/')
                        .to_string(),
                    context: name,
                },
                config,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn fs(existing: &[&str]) -> impl Fn(&Path) -> bool {
        let set: HashSet<PathBuf> = existing.iter().map(PathBuf::from).collect();
        move |p: &Path| set.contains(p)
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_is_named_once() {
        let missing = PathBuf::from("/nonexistent/kubeconfig");
        let Err(error) = load(&Source::Files(vec![missing]), None).await else {
            panic!("a missing file cannot load");
        };
        assert_eq!(
            error.to_string(),
            "kubeconfig /nonexistent/kubeconfig does not exist"
        );
    }

    #[tokio::test]
    async fn a_missing_relative_kubeconfig_says_where_it_was_looked_for() {
        let Err(error) = load(
            &Source::Files(vec![PathBuf::from("../nope/kubeconfig")]),
            None,
        )
        .await
        else {
            panic!("a missing file cannot load");
        };
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            error.to_string(),
            format!(
                "kubeconfig ../nope/kubeconfig does not exist (relative to {})",
                cwd.display()
            )
        );
    }

    #[test]
    fn field_wins_even_if_missing() {
        let s = choose_source(
            Some("~/k/prod.yaml"),
            Some(OsStr::new("/a")),
            Some(Path::new("/home/u")),
            fs(&["/a"]),
        );
        assert_eq!(s, Source::Files(vec![PathBuf::from("/home/u/k/prod.yaml")]));
    }

    #[test]
    fn env_list_skips_missing_files() {
        let s = choose_source(
            None,
            Some(OsStr::new("/a::/missing:/b")),
            Some(Path::new("/home/u")),
            fs(&["/a", "/b", "/home/u/.kube/config"]),
        );
        assert_eq!(
            s,
            Source::Files(vec![PathBuf::from("/a"), PathBuf::from("/b")])
        );
    }

    #[test]
    fn a_kubeconfig_env_naming_no_file_does_not_fall_back_to_home() {
        let s = choose_source(
            None,
            Some(OsStr::new("/missing")),
            Some(Path::new("/home/u")),
            fs(&["/home/u/.kube/config"]),
        );
        assert_eq!(s, Source::EnvNamesNoFile(vec![PathBuf::from("/missing")]));
    }

    #[tokio::test]
    async fn a_kubeconfig_env_naming_no_file_is_an_error_naming_it() {
        let Err(error) = load(
            &Source::EnvNamesNoFile(vec![PathBuf::from("/missing")]),
            None,
        )
        .await
        else {
            panic!("nothing to load");
        };
        assert!(
            error.to_string().contains("$KUBECONFIG is /missing"),
            "{error}"
        );
    }

    #[test]
    fn then_home_then_in_cluster() {
        let s = choose_source(
            None,
            Some(OsStr::new("")),
            Some(Path::new("/home/u")),
            fs(&["/home/u/.kube/config"]),
        );
        assert_eq!(
            s,
            Source::Files(vec![PathBuf::from("/home/u/.kube/config")])
        );
        let s = choose_source(None, None, Some(Path::new("/home/u")), fs(&[]));
        assert_eq!(s, Source::InCluster);
        let s = choose_source(Some("  "), None, None, fs(&[]));
        assert_eq!(s, Source::InCluster);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write kubeconfig");
        p
    }

    const A: &str = "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: ca\n  cluster: {server: 'http://127.0.0.1:1111'}\ncontexts:\n- name: a\n  context: {cluster: ca, user: ua, namespace: team-a}\nusers:\n- name: ua\n  user: {token: t}\n";
    const B: &str = "apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: cb\n  cluster: {server: 'http://127.0.0.1:2222'}\ncontexts:\n- name: b\n  context: {cluster: cb, user: ub}\nusers:\n- name: ub\n  user: {token: t}\n";

    #[tokio::test]
    async fn merged_files_first_current_context_wins_and_namespace_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(dir.path(), "a", A);
        let b = write(dir.path(), "b", B);
        let source = Source::Files(vec![a.clone(), b.clone()]);
        let loaded = load(&source, None).await.expect("loads");
        assert_eq!(loaded.endpoint.context, "a");
        assert_eq!(loaded.endpoint.server, "http://127.0.0.1:1111");
        assert_eq!(loaded.config.default_namespace, "team-a");
        let loaded = load(&source, Some("b")).await.expect("loads b");
        assert_eq!(loaded.endpoint.server, "http://127.0.0.1:2222");
        assert_eq!(loaded.config.default_namespace, "default");
        let err = load(&source, Some("c")).await.err().expect("no context c");
        let text = err.to_string();
        assert!(text.contains("context \"c\" not found"), "{text}");
        assert!(text.contains("contexts: a, b"), "{text}");
        let missing = Source::Files(vec![dir.path().join("nope")]);
        let err = load(&missing, None).await.err().expect("missing file");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
