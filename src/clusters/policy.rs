//! `ConnectionPolicy`: what an API caller may point kubegql at when it registers a cluster.
//!
//! The operator (who starts the process and places files on its machine) is trusted; API callers,
//! ADMIN included, are not (see SECURITY.md). So a cluster configuration sent through the API is
//! data only: it may not make kubegql run a command, read a file of the server, use the server's
//! own identity or reach an address the operator has closed off. What the operator opens (a
//! directory of kubeconfig files per tenant, exec plugins in those files, the in-cluster service
//! account for named tenants, extra address ranges) is set here from the server's flags.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use kube::config::Kubeconfig;

/// The operator's choices; none of them can be changed through the API.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectionPolicySettings {
    /// A directory of kubeconfig files a tenant may name in `kubeconfigPath`, as TENANT=DIR
    /// (repeat the flag, or separate with commas). No tenant has one unless given here.
    #[arg(long = "kubeconfig-dir", env = "KUBEGQL_KUBECONFIG_DIRS", value_delimiter = ',')]
    pub kubeconfig_dirs: Vec<String>,

    /// Let kubeconfig files in those directories run their exec and auth-provider credential
    /// plugins (as the server's user). Kubeconfigs sent through the API never may.
    #[arg(long, env = "KUBEGQL_ALLOW_KUBECONFIG_EXEC", default_value_t = false)]
    pub allow_kubeconfig_exec: bool,

    /// Tenants that may register IN_CLUSTER clusters, which act with the server's own service
    /// account (comma-separated). None by default.
    #[arg(long = "in-cluster-tenant", env = "KUBEGQL_IN_CLUSTER_TENANTS", value_delimiter = ',')]
    pub in_cluster_tenants: Vec<String>,

    /// Address ranges (CIDR) no cluster may be reached at, on top of the built-in link-local and
    /// cloud metadata ranges.
    #[arg(long = "deny-cluster-cidr", env = "KUBEGQL_DENY_CLUSTER_CIDRS", value_delimiter = ',')]
    pub deny_cidrs: Vec<String>,

    /// Address ranges (CIDR) that are allowed even when a deny range covers them. With
    /// `--deny-cluster-cidr 0.0.0.0/0,::/0` this becomes an allow list.
    #[arg(long = "allow-cluster-cidr", env = "KUBEGQL_ALLOW_CLUSTER_CIDRS", value_delimiter = ',')]
    pub allow_cidrs: Vec<String>,
}

/// Ranges refused whatever the operator adds: link-local (where cloud metadata services answer,
/// 169.254.169.254) and AWS's IPv6 metadata address.
const BUILT_IN_DENY: [&str; 3] = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];

/// The largest kubeconfig file read from a tenant's directory.
pub const MAX_KUBECONFIG_BYTES: u64 = 1024 * 1024;

/// Why the policy refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The input asks for something no API caller may ask for; names the field.
    #[error("{field}: {message}")]
    Refused { field: &'static str, message: String },
    /// The caller's tenant has not been given this by the operator.
    #[error("{0}")]
    Forbidden(String),
}

fn refused(field: &'static str, message: impl Into<String>) -> PolicyError {
    PolicyError::Refused { field, message: message.into() }
}

/// The words for any kubeconfig path the caller's tenant may not use: the same whether or not
/// the file exists, so the answer tells nothing about the server's files.
pub fn path_not_allowed() -> PolicyError {
    refused("kubeconfigPath", "the path is not allowed for this tenant")
}

#[derive(Debug, Clone)]
pub struct ConnectionPolicy {
    /// Tenant -> its directory, as given (resolved again at each use, so a directory that
    /// appears later or moves is followed).
    kubeconfig_dirs: HashMap<String, PathBuf>,
    allow_exec: bool,
    in_cluster_tenants: HashSet<String>,
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
}

impl Default for ConnectionPolicy {
    /// The policy with no operator choices: no kubeconfig directories, no exec, no in-cluster
    /// tenant, the built-in deny ranges.
    fn default() -> Self {
        ConnectionPolicy::new(&ConnectionPolicySettings::default())
            .unwrap_or_else(|_| unreachable!("built-in ranges parse"))
    }
}

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address range (CIDR)"))
}

impl ConnectionPolicy {
    /// The policy from the operator's flags; a malformed flag is an error at start-up.
    pub fn new(settings: &ConnectionPolicySettings) -> Result<ConnectionPolicy, String> {
        let mut kubeconfig_dirs = HashMap::new();
        for entry in settings.kubeconfig_dirs.iter().filter(|e| !e.trim().is_empty()) {
            let (tenant, dir) =
                entry.split_once('=').ok_or_else(|| format!("--kubeconfig-dir {entry:?}: expected TENANT=DIR"))?;
            if tenant.trim().is_empty() || dir.trim().is_empty() {
                return Err(format!("--kubeconfig-dir {entry:?}: expected TENANT=DIR"));
            }
            if kubeconfig_dirs.insert(tenant.trim().to_owned(), PathBuf::from(dir.trim())).is_some() {
                return Err(format!("--kubeconfig-dir: tenant {:?} is given twice", tenant.trim()));
            }
        }
        let mut deny = BUILT_IN_DENY.iter().map(|c| parse_cidr(c)).collect::<Result<Vec<_>, _>>()?;
        for cidr in settings.deny_cidrs.iter().filter(|c| !c.trim().is_empty()) {
            deny.push(parse_cidr(cidr).map_err(|e| format!("--deny-cluster-cidr: {e}"))?);
        }
        let allow = settings
            .allow_cidrs
            .iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| parse_cidr(c).map_err(|e| format!("--allow-cluster-cidr: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ConnectionPolicy {
            kubeconfig_dirs,
            allow_exec: settings.allow_kubeconfig_exec,
            in_cluster_tenants: settings
                .in_cluster_tenants
                .iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            deny,
            allow,
        })
    }

    /// IN_CLUSTER clusters use the server's own service account: only for tenants the operator
    /// names.
    pub fn check_in_cluster(&self, tenant: &str) -> Result<(), PolicyError> {
        if self.in_cluster_tenants.contains(tenant) {
            Ok(())
        } else {
            Err(PolicyError::Forbidden(format!(
                "tenant {tenant:?} may not use IN_CLUSTER: it acts with the server's own service account, \
                 which the operator has not opened to this tenant"
            )))
        }
    }

    /// Whether an address may be connected to: an allow range wins, then any deny range refuses.
    pub fn address_allowed(&self, address: IpAddr) -> bool {
        // An IPv4 address written as IPv6 (::ffff:169.254.169.254) is the same address.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
            v4 => v4,
        };
        if self.allow.iter().any(|net| net.contains(&address)) {
            return true;
        }
        !self.deny.iter().any(|net| net.contains(&address))
    }

    /// Checks a server URL's host when it is an address literal (names are checked when they
    /// are resolved, at connection time).
    pub fn check_server_url(&self, field: &'static str, url: &str) -> Result<(), PolicyError> {
        let uri: http::Uri = url.parse().map_err(|_| refused(field, format!("{url:?} is not a valid URL")))?;
        let host = uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(address) = host.parse::<IpAddr>()
            && !self.address_allowed(address)
        {
            return Err(refused(field, format!("{url:?}: the address {address} is not allowed for clusters")));
        }
        Ok(())
    }

    /// Resolves a host name and keeps only the addresses the policy allows; refuses when none is
    /// left. Runs at connection time, so the address checked is the address used.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<std::net::SocketAddr>, PolicyError> {
        let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| refused("server", format!("the host name {host:?} could not be resolved")))?
            .collect();
        let allowed: Vec<_> = found.iter().copied().filter(|a| self.address_allowed(a.ip())).collect();
        if allowed.is_empty() {
            return Err(refused("server", format!("{host:?} resolves only to addresses not allowed for clusters")));
        }
        Ok(allowed)
    }

    /// A kubeconfig sent through the API carries data only: no command to run, no file of the
    /// server to read, no plain-HTTP server, no proxy. Refuses with the field at fault.
    pub fn check_api_kubeconfig(&self, config: &Kubeconfig) -> Result<(), PolicyError> {
        let field = "kubeconfig";
        for named in &config.clusters {
            let at = |what: &str| format!("clusters[{:?}].{what}", named.name);
            let Some(cluster) = &named.cluster else {
                continue;
            };
            match cluster.server.as_deref() {
                Some(server) if server.starts_with("https://") => self
                    .check_server_url(field, server)
                    .map_err(|e| refused(field, format!("{}: {e}", at("server"))))?,
                Some(_) => {
                    return Err(refused(field, format!("{}: the server must use https://", at("server"))));
                }
                None => return Err(refused(field, format!("{}: no server", at("server")))),
            }
            if cluster.certificate_authority.is_some() {
                return Err(refused(
                    field,
                    format!(
                        "{}: file paths are not accepted; use certificate-authority-data",
                        at("certificate-authority")
                    ),
                ));
            }
            if cluster.proxy_url.is_some() {
                return Err(refused(field, format!("{}: proxies are not accepted", at("proxy-url"))));
            }
        }
        for named in &config.auth_infos {
            let at = |what: &str| format!("users[{:?}].{what}", named.name);
            let Some(user) = &named.auth_info else {
                continue;
            };
            let forbidden = [
                ("exec", user.exec.is_some(), "credential plugins (commands) are not accepted"),
                ("auth-provider", user.auth_provider.is_some(), "auth-provider plugins are not accepted"),
                ("tokenFile", user.token_file.is_some(), "file paths are not accepted; use token"),
                (
                    "client-certificate",
                    user.client_certificate.is_some(),
                    "file paths are not accepted; use client-certificate-data",
                ),
                ("client-key", user.client_key.is_some(), "file paths are not accepted; use client-key-data"),
            ];
            if let Some((what, _, why)) = forbidden.iter().find(|(_, set, _)| *set) {
                return Err(refused(field, format!("{}: {why}", at(what))));
            }
        }
        Ok(())
    }

    /// Exec and auth-provider plugins in the operator's kubeconfig files run only when the
    /// operator allows them.
    pub fn check_file_kubeconfig(&self, config: &Kubeconfig) -> Result<(), PolicyError> {
        if self.allow_exec {
            return Ok(());
        }
        for named in &config.auth_infos {
            let Some(user) = &named.auth_info else {
                continue;
            };
            if user.exec.is_some() || user.auth_provider.is_some() {
                return Err(refused(
                    "kubeconfigPath",
                    format!(
                        "users[{:?}] uses a credential plugin (exec or auth-provider), which the operator has not \
                         allowed (--allow-kubeconfig-exec)",
                        named.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether a kubeconfig may make kubegql run a command (so building its client must happen
    /// off the async workers).
    pub fn runs_plugins(config: &Kubeconfig) -> bool {
        config
            .auth_infos
            .iter()
            .filter_map(|n| n.auth_info.as_ref())
            .any(|u| u.exec.is_some() || u.auth_provider.is_some())
    }

    /// Reads a kubeconfig file of `tenant`'s directory: the path (relative to the directory, or
    /// absolute inside it) is resolved with every link followed and must stay inside the
    /// directory, be a regular file and be at most `MAX_KUBECONFIG_BYTES`. Read on a blocking
    /// thread, never following a last link and never waiting on a FIFO. Any refusal is
    /// `path_not_allowed`, whatever the reason, so the caller learns nothing of the file system.
    pub async fn read_kubeconfig(&self, tenant: &str, path: &str) -> Result<Kubeconfig, PolicyError> {
        let Some(dir) = self.kubeconfig_dirs.get(tenant).cloned() else {
            return Err(path_not_allowed());
        };
        let path = path.to_owned();
        let text = tokio::task::spawn_blocking(move || read_inside(&dir, &path))
            .await
            .map_err(|_| path_not_allowed())?
            .map_err(|reason| {
                tracing::debug!(tenant, reason, "kubeconfig path refused");
                path_not_allowed()
            })?;
        // A parse error may quote the file, which can hold credentials: say only that it failed.
        let config = Kubeconfig::from_yaml(&text)
            .map_err(|_| refused("kubeconfigPath", "the file is not a valid kubeconfig"))?;
        self.check_file_kubeconfig(&config)?;
        Ok(config)
    }
}

/// The text of `path` inside `dir`; the error says why (for the server's log only).
fn read_inside(dir: &Path, path: &str) -> Result<String, &'static str> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.is_empty() || path.contains('\0') {
        return Err("empty path");
    }
    let root = dir.canonicalize().map_err(|_| "the tenant's directory cannot be resolved")?;
    let joined = root.join(path);
    let resolved = joined.canonicalize().map_err(|_| "the path cannot be resolved")?;
    if !resolved.starts_with(&root) || resolved == root {
        return Err("the path leaves the tenant's directory");
    }
    // O_NOFOLLOW: a link swapped in after the check is not followed; O_NONBLOCK: opening a
    // FIFO does not wait for a writer (and it is refused below as not a regular file).
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&resolved)
        .map_err(|_| "the file cannot be opened")?;
    let meta = file.metadata().map_err(|_| "the file cannot be read")?;
    if !meta.file_type().is_file() {
        return Err("not a regular file");
    }
    if meta.len() > MAX_KUBECONFIG_BYTES {
        return Err("the file is too large");
    }
    let mut text = String::new();
    (&mut file)
        .take(MAX_KUBECONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|_| "the file cannot be read as text")?;
    if text.len() as u64 > MAX_KUBECONFIG_BYTES {
        return Err("the file is too large");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(settings: ConnectionPolicySettings) -> ConnectionPolicy {
        ConnectionPolicy::new(&settings).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused_by_default() {
        let p = ConnectionPolicy::default();
        for denied in ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            assert!(!p.address_allowed(ip(denied)), "{denied} must be refused");
        }
        for allowed in ["127.0.0.1", "10.0.0.1", "192.168.1.10", "::1", "fd00:ec2::253", "8.8.8.8"] {
            assert!(p.address_allowed(ip(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn server_urls_with_denied_literals_are_refused_before_any_connection() {
        let p = ConnectionPolicy::default();
        for url in [
            "https://169.254.169.254",
            "https://169.254.169.254:443/latest/meta-data",
            "https://[fd00:ec2::254]:6443",
            "https://[fe80::1]",
            "https://[::ffff:169.254.169.254]",
        ] {
            let err = p.check_server_url("apiServerUrl", url).unwrap_err();
            assert!(matches!(err, PolicyError::Refused { field: "apiServerUrl", .. }), "{url}: {err}");
        }
        assert!(p.check_server_url("apiServerUrl", "https://127.0.0.1:6443").is_ok());
        assert!(p.check_server_url("apiServerUrl", "https://kubernetes.example:6443").is_ok());
    }

    #[test]
    fn the_operator_adds_deny_and_allow_ranges() {
        let p = policy(ConnectionPolicySettings {
            deny_cidrs: vec!["10.0.0.0/8".into(), "127.0.0.1".into()],
            allow_cidrs: vec!["10.1.0.0/16".into()],
            ..Default::default()
        });
        assert!(!p.address_allowed(ip("10.2.3.4")));
        assert!(!p.address_allowed(ip("127.0.0.1")));
        assert!(p.address_allowed(ip("127.0.0.2")));
        assert!(p.address_allowed(ip("10.1.2.3")), "an allow range wins over a deny range");
        let allow_list = policy(ConnectionPolicySettings {
            deny_cidrs: vec!["0.0.0.0/0".into(), "::/0".into()],
            allow_cidrs: vec!["192.168.10.0/24".into()],
            ..Default::default()
        });
        assert!(allow_list.address_allowed(ip("192.168.10.7")));
        assert!(!allow_list.address_allowed(ip("192.168.11.7")));
        assert!(!allow_list.address_allowed(ip("2001:db8::1")));
        assert!(
            ConnectionPolicy::new(&ConnectionPolicySettings { deny_cidrs: vec!["nope".into()], ..Default::default() })
                .is_err()
        );
        assert!(
            ConnectionPolicy::new(&ConnectionPolicySettings {
                kubeconfig_dirs: vec!["/no/tenant".into()],
                ..Default::default()
            })
            .is_err()
        );
    }

    #[tokio::test]
    async fn names_resolving_only_to_denied_addresses_are_refused() {
        // `localhost` resolves from /etc/hosts: no traffic leaves the machine.
        let p = policy(ConnectionPolicySettings {
            deny_cidrs: vec!["127.0.0.0/8".into(), "::1/128".into()],
            ..Default::default()
        });
        assert!(p.resolve("localhost", 6443).await.is_err());
        let open = ConnectionPolicy::default();
        let found = open.resolve("localhost", 6443).await.unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 6443));
    }

    #[test]
    fn in_cluster_is_for_named_tenants_only() {
        let p = policy(ConnectionPolicySettings { in_cluster_tenants: vec!["ops".into()], ..Default::default() });
        assert!(p.check_in_cluster("ops").is_ok());
        assert!(matches!(p.check_in_cluster("blue"), Err(PolicyError::Forbidden(_))));
        assert!(ConnectionPolicy::default().check_in_cluster("default").is_err());
    }

    const DATA_ONLY: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: "AAAA"}
users:
- name: u
  user: {token: "secret"}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"#;

    #[test]
    fn api_kubeconfigs_carry_data_only() {
        let p = ConnectionPolicy::default();
        assert!(p.check_api_kubeconfig(&Kubeconfig::from_yaml(DATA_ONLY).unwrap()).is_ok());
        let cases = [
            (
                "user: {token: \"secret\"}",
                "user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: sh, args: [-c, id]}}",
                "exec",
            ),
            (
                "user: {token: \"secret\"}",
                "user: {auth-provider: {name: gcp, config: {cmd-path: /bin/sh}}}",
                "auth-provider",
            ),
            ("user: {token: \"secret\"}", "user: {tokenFile: /etc/shadow}", "tokenFile"),
            (
                "user: {token: \"secret\"}",
                "user: {client-certificate: /etc/ssl/a.crt, client-key-data: AAAA}",
                "client-certificate",
            ),
            ("user: {token: \"secret\"}", "user: {client-certificate-data: AAAA, client-key: /root/key}", "client-key"),
            (
                "certificate-authority-data: \"AAAA\"",
                "certificate-authority: /etc/kubegql/ca.crt",
                "certificate-authority",
            ),
            ("https://127.0.0.1:6443", "http://127.0.0.1:6443", "https"),
            ("https://127.0.0.1:6443", "https://169.254.169.254", "169.254.169.254"),
            (
                "certificate-authority-data: \"AAAA\"",
                "certificate-authority-data: \"AAAA\", proxy-url: \"http://10.0.0.1:3128\"",
                "proxy-url",
            ),
        ];
        for (from, to, named) in cases {
            let text = DATA_ONLY.replace(from, to);
            assert_ne!(text, DATA_ONLY, "{to}");
            let config = Kubeconfig::from_yaml(&text).unwrap();
            match p.check_api_kubeconfig(&config) {
                Err(PolicyError::Refused { field: "kubeconfig", message }) => {
                    assert!(message.contains(named), "{named}: {message}")
                }
                other => panic!("{named}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn plugins_in_operator_files_need_the_operators_leave() {
        let with_exec = Kubeconfig::from_yaml(&DATA_ONLY.replace(
            "user: {token: \"secret\"}",
            "user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}",
        ))
        .unwrap();
        assert!(ConnectionPolicy::runs_plugins(&with_exec));
        assert!(ConnectionPolicy::default().check_file_kubeconfig(&with_exec).is_err());
        let allowing = policy(ConnectionPolicySettings { allow_kubeconfig_exec: true, ..Default::default() });
        assert!(allowing.check_file_kubeconfig(&with_exec).is_ok());
    }

    #[tokio::test]
    async fn kubeconfig_files_stay_inside_the_tenants_directory() {
        let root = tempfile::tempdir().unwrap();
        let blue = root.path().join("blue");
        let red = root.path().join("red");
        std::fs::create_dir_all(blue.join("nested")).unwrap();
        std::fs::create_dir_all(&red).unwrap();
        std::fs::write(blue.join("ok.yaml"), DATA_ONLY).unwrap();
        std::fs::write(blue.join("nested/ok.yaml"), DATA_ONLY).unwrap();
        std::fs::write(red.join("theirs.yaml"), DATA_ONLY).unwrap();
        std::fs::write(blue.join("big.yaml"), vec![b'#'; MAX_KUBECONFIG_BYTES as usize + 1]).unwrap();
        std::os::unix::fs::symlink(red.join("theirs.yaml"), blue.join("link-out.yaml")).unwrap();
        std::os::unix::fs::symlink(blue.join("ok.yaml"), blue.join("link-in.yaml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", blue.join("zero.yaml")).unwrap();
        let fifo = blue.join("fifo.yaml");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let p = policy(ConnectionPolicySettings {
            kubeconfig_dirs: vec![format!("blue={}", blue.display()), format!("red={}", red.display())],
            ..Default::default()
        });
        for fine in ["ok.yaml", "nested/ok.yaml", "link-in.yaml", &blue.join("ok.yaml").display().to_string()] {
            assert!(p.read_kubeconfig("blue", fine).await.is_ok(), "{fine}");
        }
        let outside = red.join("theirs.yaml").display().to_string();
        for refused_path in [
            "../red/theirs.yaml",
            outside.as_str(),
            "link-out.yaml",
            "zero.yaml",
            "/dev/zero",
            "fifo.yaml",
            "big.yaml",
            "missing.yaml",
            "/etc/passwd",
            "/nonexistent/kubeconfig",
            ".",
            "",
        ] {
            let started = std::time::Instant::now();
            assert_eq!(
                p.read_kubeconfig("blue", refused_path).await.unwrap_err(),
                path_not_allowed(),
                "{refused_path}"
            );
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "{refused_path} must not block");
        }
        assert_eq!(p.read_kubeconfig("green", "ok.yaml").await.unwrap_err(), path_not_allowed(), "no directory");
        assert!(p.read_kubeconfig("red", "theirs.yaml").await.is_ok());
    }
}
