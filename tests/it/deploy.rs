//! The deploy files under `deploy/`, checked statically: no network (the simulator runs on
//! loopback port 0), no docker, no cluster.
//!
//! - The example, compose and Kubernetes configs load with hirehook's own loader and with
//!   `hirehook config check`, every `${VAR}` supplied by whatever runs them.
//! - Every YAML file parses; the Kubernetes objects have the expected kinds, probes and
//!   hardening, and refer to each other by the right names.
//! - The Dockerfile builds and runs the crate's binary and health-checks `/healthz`; the
//!   compose file runs commands the binary has, and its config's integration ids are the
//!   ones its simulator serves.
//! - The systemd unit carries the hardening directives and runs `hirehook run --config`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hirehook::config::Config;
use serde::Deserialize as _;
use serde_norway::Value;

/// A valid Standard Webhooks secret, used as the value of every `${VAR}`: it also satisfies
/// the keys that are not webhook secrets (any non-empty string does).
const DUMMY_SECRET: &str = "whsec_dGVzdCBzaWduaW5nIGtleQ==";

/// Where the image and the unit mount or install the config.
const CONFIG_PATH: &str = "/etc/hirehook/hirehook.toml";
/// The image's data volume.
const DATA_DIR: &str = "/var/lib/hirehook";
/// The admin port every deploy file probes.
const ADMIN_PORT: u16 = 9400;
/// The image's unprivileged uid (Dockerfile `USER`, Kubernetes `runAsUser`).
const IMAGE_UID: u64 = 10001;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn hirehook() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hirehook"));
    cmd.env_remove("RUST_LOG");
    cmd
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Loads a config with hirehook's loader, every `${VAR}` = [`DUMMY_SECRET`]; returns it
/// with the variables it asked for.
fn load_config(text: &str, origin: &str) -> (Config, BTreeSet<String>) {
    let asked = RefCell::new(BTreeSet::new());
    let config = Config::from_str_with_env(text, Path::new(origin), |var| {
        asked.borrow_mut().insert(var.to_owned());
        Some(DUMMY_SECRET.to_owned())
    })
    .unwrap_or_else(|e| panic!("{origin} does not load: {e}"));
    (config, asked.into_inner())
}

/// `hirehook config check --config path` with exactly `env` (plus nothing inherited that
/// could satisfy a `${VAR}`).
fn config_check(path: &Path, env: &BTreeMap<String, String>) -> Output {
    let mut cmd = hirehook();
    cmd.args(["config", "check", "--config"])
        .arg(path)
        .env_clear()
        .envs(env);
    cmd.output().expect("run hirehook config check")
}

fn dummy_env(vars: &BTreeSet<String>) -> BTreeMap<String, String> {
    vars.iter()
        .map(|v| (v.clone(), DUMMY_SECRET.to_owned()))
        .collect()
}

/// Every document of a (multi-document) YAML file, `<<` merge keys applied.
fn yaml_documents(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value =
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}"));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{rel}: bad merge key: {e}"));
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Every file under `deploy/` (recursively) whose name ends in one of `exts`, relative to
/// the crate root, sorted.
fn deploy_files(exts: &[&str]) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read deploy dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    walk(&root().join("deploy"), &mut all);
    let mut files: Vec<String> = all
        .iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            exts.iter().any(|ext| name.ends_with(ext))
        })
        .map(|p| {
            p.strip_prefix(root())
                .expect("under the crate root")
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    files.sort();
    files
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

fn seq_of<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    v.as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v:?}"))
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    seq_of(v, what)
        .iter()
        .map(|s| match s {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("{what}: expected strings, got {other:?}"),
        })
        .collect()
}

/// The subcommands `hirehook --help` lists.
fn help_commands() -> BTreeSet<String> {
    let out = hirehook()
        .arg("--help")
        .output()
        .expect("run hirehook --help");
    assert!(out.status.success(), "hirehook --help failed");
    let help = lossy(&out.stdout);
    let section = help
        .split("Commands:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Commands: section in\n{help}"));
    section
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The `[[bin]]` name in Cargo.toml (the package name if none is declared).
fn binary_name() -> String {
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml is TOML");
    manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .and_then(|bins| bins.first())
        .and_then(|b| b.get("name"))
        .or_else(|| manifest.get("package").and_then(|p| p.get("name")))
        .and_then(|n| n.as_str())
        .expect("a binary name in Cargo.toml")
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// The `hirehook.toml` embedded in the Kubernetes ConfigMap.
fn kubernetes_config_text() -> String {
    let docs = yaml_documents("deploy/kubernetes/configmap.yaml");
    let map = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ConfigMap"))
        .expect("configmap.yaml holds a ConfigMap");
    str_of(
        &map["data"]["hirehook.toml"],
        "ConfigMap data.hirehook.toml",
    )
    .to_owned()
}

/// Every config file a deploy target uses: (name, text).
fn deploy_configs() -> Vec<(String, String)> {
    vec![
        (
            "deploy/hirehook.example.toml".to_owned(),
            read("deploy/hirehook.example.toml"),
        ),
        (
            "deploy/docker/hirehook.compose.toml".to_owned(),
            read("deploy/docker/hirehook.compose.toml"),
        ),
        (
            "deploy/kubernetes/configmap.yaml#hirehook.toml".to_owned(),
            kubernetes_config_text(),
        ),
    ]
}

#[test]
fn deploy_configs_load_with_hirehooks_loader() {
    for (name, text) in deploy_configs() {
        let (config, _) = load_config(&text, &name);
        assert!(!config.integrations.is_empty(), "{name}: no integrations");
    }
}

#[test]
fn config_check_accepts_deploy_configs_with_their_variables_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, (name, text)) in deploy_configs().into_iter().enumerate() {
        let (_, vars) = load_config(&text, &name);
        let path = dir.path().join(format!("config-{i}.toml"));
        std::fs::write(&path, &text).expect("write config");

        let out = config_check(&path, &dummy_env(&vars));
        let (stdout, stderr) = (lossy(&out.stdout), lossy(&out.stderr));
        assert!(
            out.status.success(),
            "{name}: config check failed\n{stderr}"
        );
        assert!(stderr.contains("config OK"), "{name}: {stderr}");
        assert!(
            !stdout.contains(DUMMY_SECRET),
            "{name}: config check printed a secret"
        );

        // Without one of its variables it fails (exit 2), naming the variable.
        if let Some(var) = vars.iter().next() {
            let mut env = dummy_env(&vars);
            env.remove(var);
            let out = config_check(&path, &env);
            assert_eq!(out.status.code(), Some(2), "{name} without {var}");
            assert!(lossy(&out.stderr).contains(var.as_str()));
        }
    }
}

#[test]
fn container_configs_keep_the_store_on_the_volume_and_expose_admin_with_a_token() {
    // The configs containers use (the example is for a local process).
    let containers = deploy_configs()
        .into_iter()
        .filter(|(name, _)| name != "deploy/hirehook.example.toml");
    for (name, text) in containers {
        let (config, _) = load_config(&text, &name);
        assert!(
            config.store.path.starts_with(DATA_DIR) && config.store.path != Path::new(DATA_DIR),
            "{name}: store.path {} must be a directory below the {DATA_DIR} volume",
            config.store.path.display()
        );
        assert_eq!(
            config.admin.listen.to_string(),
            format!("0.0.0.0:{ADMIN_PORT}"),
            "{name}: probes reach the admin API from outside the container's loopback"
        );
        assert!(config.admin.token.is_some(), "{name}: admin.token");
    }
}

#[test]
fn compose_config_points_at_the_compose_services() {
    let (config, _) = load_config(
        &read("deploy/docker/hirehook.compose.toml"),
        "hirehook.compose.toml",
    );
    assert_eq!(config.kombo.base_url, "http://sim:7700/v1");
    assert_eq!(config.kombo.api_key.expose(), "sim_test_key");
    assert!(
        config.delivery.allow_private_networks,
        "compose service names resolve to private addresses"
    );
    assert_eq!(config.subscribers.len(), 1);
    let url = url::Url::parse(&config.subscribers[0].url).expect("subscriber url");
    assert_eq!(url.host_str(), Some("receiver"));
    assert_eq!(url.port(), Some(8081));
}

// ---------------------------------------------------------------------------------------
// YAML
// ---------------------------------------------------------------------------------------

#[test]
fn every_yaml_file_under_deploy_parses() {
    let files = deploy_files(&[".yaml", ".yml"]);
    assert!(
        files.len() >= 5,
        "expected compose + kubernetes files: {files:?}"
    );
    for file in files {
        let docs = yaml_documents(&file);
        assert!(!docs.is_empty(), "{file}: no YAML document");
        for doc in &docs {
            assert!(doc.is_mapping(), "{file}: a document is not a mapping");
        }
    }
}

/// Every Kubernetes object under deploy/kubernetes, by kind (one per kind expected).
fn kubernetes_objects() -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    for file in deploy_files(&[".yaml", ".yml"]) {
        if !file.starts_with("deploy/kubernetes/") {
            continue;
        }
        for doc in yaml_documents(&file) {
            let kind = str_of(&doc["kind"], &format!("{file}: kind")).to_owned();
            assert!(
                doc["apiVersion"].is_string(),
                "{file}: {kind} has no apiVersion"
            );
            let previous = objects.insert(kind.clone(), doc);
            assert!(previous.is_none(), "two {kind} objects");
        }
    }
    objects
}

#[test]
fn kubernetes_has_the_expected_kinds_and_kustomization_lists_them() {
    let objects = kubernetes_objects();
    for kind in [
        "StatefulSet",
        "Service",
        "ConfigMap",
        "Secret",
        "Kustomization",
    ] {
        assert!(
            objects.contains_key(kind),
            "no {kind} under deploy/kubernetes"
        );
    }
    let listed: BTreeSet<String> = strings(&objects["Kustomization"]["resources"], "resources")
        .into_iter()
        .map(|r| format!("deploy/kubernetes/{r}"))
        .collect();
    let present: BTreeSet<String> = deploy_files(&[".yaml", ".yml"])
        .into_iter()
        .filter(|f| f.starts_with("deploy/kubernetes/") && !f.ends_with("/kustomization.yaml"))
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources");
}

#[test]
fn statefulset_is_a_single_hardened_writer_with_probes() {
    let objects = kubernetes_objects();
    let sts = &objects["StatefulSet"];
    let spec = &sts["spec"];
    assert_eq!(
        spec["replicas"].as_u64(),
        Some(1),
        "sled allows one process"
    );
    let pod = &spec["template"]["spec"];
    let containers = seq_of(&pod["containers"], "containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // Probes on the admin port.
    let admin_port = seq_of(&c["ports"], "ports")
        .iter()
        .find(|p| p["name"].as_str() == Some("admin"))
        .expect("a port named admin");
    assert_eq!(
        admin_port["containerPort"].as_u64(),
        Some(ADMIN_PORT.into())
    );
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe} path");
        assert!(
            get["port"].as_str() == Some("admin") || get["port"].as_u64() == Some(9400),
            "{probe} port"
        );
    }

    // Hardening.
    let pod_sec = &pod["securityContext"];
    let sec = &c["securityContext"];
    assert_eq!(pod_sec["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(sec["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod_sec["runAsUser"].as_u64(), Some(IMAGE_UID));
    assert_eq!(
        pod_sec["fsGroup"].as_u64(),
        Some(IMAGE_UID),
        "volume writable"
    );
    assert_eq!(sec["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sec["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&sec["capabilities"]["drop"], "drop"), ["ALL"]);
    assert_eq!(
        sec["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    assert_eq!(
        pod_sec["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    for kind in ["requests", "limits"] {
        let r = &c["resources"][kind];
        assert!(r["cpu"].is_string() && r["memory"].is_string(), "{kind}");
    }

    // The command and the mounts.
    let args = strings(&c["args"], "args");
    assert_eq!(&args[..3], ["run", "--config", CONFIG_PATH]);
    let mounts: BTreeMap<String, String> = seq_of(&c["volumeMounts"], "volumeMounts")
        .iter()
        .map(|m| {
            (
                str_of(&m["mountPath"], "mountPath").to_owned(),
                str_of(&m["name"], "name").to_owned(),
            )
        })
        .collect();
    let claim =
        seq_of(&spec["volumeClaimTemplates"], "volumeClaimTemplates")[0]["metadata"]["name"]
            .as_str()
            .expect("claim name");
    assert_eq!(mounts.get(DATA_DIR).map(String::as_str), Some(claim));
    let config_volume = seq_of(&pod["volumes"], "volumes")
        .iter()
        .find(|v| {
            Some(v["name"].as_str().unwrap_or(""))
                == mounts.get("/etc/hirehook").map(String::as_str)
        })
        .expect("a volume mounted at /etc/hirehook");
    assert_eq!(
        config_volume["configMap"]["name"].as_str(),
        objects["ConfigMap"]["metadata"]["name"].as_str()
    );

    // Names and labels tie the objects together.
    let service = &objects["Service"];
    assert_eq!(
        spec["serviceName"].as_str(),
        service["metadata"]["name"].as_str()
    );
    let pod_labels = &spec["template"]["metadata"]["labels"];
    let selector = spec["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    for (k, v) in selector.iter().chain(
        service["spec"]["selector"]
            .as_mapping()
            .expect("service selector")
            .iter(),
    ) {
        assert_eq!(&pod_labels[str_of(k, "label")], v, "selector {k:?}");
    }
    assert!(
        seq_of(&service["spec"]["ports"], "service ports")
            .iter()
            .any(|p| p["port"].as_u64() == Some(ADMIN_PORT.into())),
        "the Service exposes the admin port"
    );
    let secret_ref = seq_of(&c["envFrom"], "envFrom")[0]["secretRef"]["name"].as_str();
    assert_eq!(secret_ref, objects["Secret"]["metadata"]["name"].as_str());

    // Shutdown: SIGKILL only well after the delivery grace.
    let (config, _) = load_config(&kubernetes_config_text(), "configmap");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        Duration::from_secs(grace) > config.delivery.shutdown_grace + Duration::from_secs(5),
        "terminationGracePeriodSeconds {grace} vs shutdown_grace {:?}",
        config.delivery.shutdown_grace
    );
}

#[test]
fn kubernetes_secret_holds_every_variable_the_config_uses() {
    let objects = kubernetes_objects();
    let secret_keys: BTreeSet<String> = objects["Secret"]["stringData"]
        .as_mapping()
        .expect("Secret stringData")
        .keys()
        .map(|k| str_of(k, "key").to_owned())
        .collect();
    let (_, vars) = load_config(&kubernetes_config_text(), "configmap");
    assert!(!vars.is_empty());
    for var in &vars {
        assert!(secret_keys.contains(var), "the Secret lacks {var}");
    }

    // The placeholders as shipped are refused at startup (exit 2, naming the key, not
    // echoing the value) rather than used to sign.
    let env: BTreeMap<String, String> = objects["Secret"]["stringData"]
        .as_mapping()
        .expect("stringData")
        .iter()
        .map(|(k, v)| (str_of(k, "key").to_owned(), str_of(v, "value").to_owned()))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hirehook.toml");
    std::fs::write(&path, kubernetes_config_text()).expect("write");
    let out = config_check(&path, &env);
    let stderr = lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("secrets[0]"), "{stderr}");
    assert!(!stderr.contains("REPLACE_ME"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuation lines
/// joined and comment lines dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn dockerfile() -> Vec<Instruction> {
    let text = read("deploy/docker/Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_uppercase(),
                    args: args.split_whitespace().collect::<Vec<_>>().join(" "),
                });
                current.clear();
            }
        }
    }
    assert!(current.is_empty(), "Dockerfile ends inside a continuation");
    out
}

/// The instructions of each stage, by stage name (`FROM … AS name`), in order.
fn dockerfile_stages() -> Vec<(String, Vec<Instruction>)> {
    let mut stages: Vec<(String, Vec<Instruction>)> = Vec::new();
    for ins in dockerfile() {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [.., as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => format!("stage{}", stages.len()),
            };
            stages.push((name, vec![ins]));
        } else if let Some((_, stage)) = stages.last_mut() {
            stage.push(ins);
        } else {
            assert_eq!(ins.keyword, "ARG", "only ARG may precede the first FROM");
        }
    }
    stages
}

fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{what} is not exec form ({e}): {args}"))
}

#[test]
fn dockerfile_builds_and_runs_the_crates_binary() {
    let bin = binary_name();
    assert_eq!(bin, "hirehook");
    let stages = dockerfile_stages();
    let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();

    // The build: locked release build of the binary, copied out of the cache mount.
    let builds: Vec<&Instruction> = stages
        .iter()
        .flat_map(|(_, s)| s)
        .filter(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .collect();
    assert!(
        builds
            .iter()
            .any(|i| i.args.contains("cargo build --release --locked")
                && i.args.contains(&format!("--bin {bin}"))
                && i.args.contains(&format!("target/release/{bin}"))),
        "no `cargo build --release --locked --bin {bin}` copying target/release/{bin}: {builds:?}"
    );
    let first_from = &stages[0].1[0].args;
    assert!(
        first_from.starts_with("rust:"),
        "builder image: {first_from}"
    );

    // The final (default) stage is the runtime.
    let (last_name, runtime) = stages.last().expect("stages");
    assert_eq!(last_name, "runtime", "stages: {names:?}");
    let runtime_base = &runtime[0].args;
    let base_stage = stages
        .iter()
        .find(|(n, _)| runtime_base.starts_with(n.as_str()))
        .map(|(_, s)| s)
        .expect("runtime builds on a named base stage");
    let get = |keyword: &str| -> Vec<&Instruction> {
        runtime
            .iter()
            .chain(base_stage.iter())
            .filter(|i| i.keyword == keyword)
            .collect()
    };
    let entrypoint = get("ENTRYPOINT");
    assert_eq!(entrypoint.len(), 1);
    assert_eq!(exec_form(&entrypoint[0].args, "ENTRYPOINT"), [bin.as_str()]);
    let cmd = get("CMD");
    assert_eq!(
        exec_form(&cmd[0].args, "CMD"),
        ["run", "--config", CONFIG_PATH]
    );
    assert!(
        get("COPY")
            .iter()
            .any(|i| i.args.ends_with(&format!("/usr/local/bin/{bin}"))),
        "the binary is copied onto PATH"
    );

    // Non-root, the store on a volume.
    let user = &get("USER").last().expect("USER").args;
    let uid = user.split(':').next().unwrap_or("");
    assert!(uid != "root" && uid != "0", "USER {user}");
    assert_eq!(
        uid,
        IMAGE_UID.to_string(),
        "the uid Kubernetes runAsUser names"
    );
    let volume = exec_form(&get("VOLUME")[0].args, "VOLUME");
    assert_eq!(volume, [DATA_DIR]);

    // The healthcheck hits /healthz on the admin port, with a tool the image installs.
    let health = get("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    let check = health[0]
        .args
        .split_once("CMD ")
        .map(|(_, c)| exec_form(c, "HEALTHCHECK CMD"))
        .expect("HEALTHCHECK … CMD [...]");
    assert!(
        check
            .last()
            .is_some_and(|url| url.ends_with(&format!(":{ADMIN_PORT}/healthz"))),
        "HEALTHCHECK: {check:?}"
    );
    let tool = &check[0];
    assert!(
        get("RUN")
            .iter()
            .any(|i| i.args.contains("apt-get install") && i.args.contains(tool.as_str())),
        "the healthcheck tool {tool} is installed in the runtime image"
    );
    assert!(
        get("RUN")
            .iter()
            .any(|i| i.args.contains("ca-certificates")),
        "rustls-platform-verifier needs the system CA store"
    );

    // The receiver target compose builds.
    assert!(names.contains(&"receiver"), "stages: {names:?}");
}

#[test]
fn dockerignore_keeps_build_output_and_git_out_of_the_context() {
    let ignore = read(".dockerignore");
    let entries: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["/target", "/.git"] {
        assert!(entries.contains(needed), ".dockerignore lacks {needed}");
    }
    for kept in ["/src", "/Cargo.toml", "/Cargo.lock", "/examples"] {
        assert!(
            !entries.contains(kept),
            ".dockerignore must not exclude {kept}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Compose
// ---------------------------------------------------------------------------------------

fn compose() -> Value {
    let mut docs = yaml_documents("deploy/docker/docker-compose.yml");
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

/// A compose `environment:` as a map (mapping or `KEY=value` list form).
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                (
                    str_of(k, "env key").to_owned(),
                    str_of(v, "env value").to_owned(),
                )
            })
            .collect(),
        Value::Sequence(list) => list
            .iter()
            .filter_map(|kv| kv.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The command of a service running the hirehook image (exec form).
fn compose_command(service: &Value, name: &str) -> Vec<String> {
    strings(&service["command"], &format!("{name}.command"))
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[test]
fn compose_services_run_commands_the_binary_has() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let commands = help_commands();
    for needed in ["run", "sim", "config"] {
        assert!(commands.contains(needed), "hirehook --help: {commands:?}");
    }
    let stage_names: Vec<String> = dockerfile_stages().into_iter().map(|(n, _)| n).collect();

    for (name, service) in services {
        let name = str_of(name, "service name");
        let target = str_of(&service["build"]["target"], &format!("{name}.build.target"));
        assert!(
            stage_names.iter().any(|s| s == target),
            "{name}: no Dockerfile stage {target}"
        );
        assert_eq!(
            service["build"]["dockerfile"].as_str(),
            Some("deploy/docker/Dockerfile")
        );
        let context = root()
            .join("deploy/docker")
            .join(str_of(&service["build"]["context"], "context"));
        assert!(
            context.join("Cargo.toml").is_file(),
            "{name}: context is the crate root"
        );
        if target == "runtime" {
            let command = compose_command(service, name);
            assert!(
                commands.contains(&command[0]),
                "{name}: `{}` is not a hirehook command",
                command[0]
            );
        }
    }
    assert_eq!(
        compose_command(&compose["services"]["sim"], "sim")[0],
        "sim"
    );
    assert_eq!(
        compose_command(&compose["services"]["hirehook"], "hirehook"),
        ["run", "--config", CONFIG_PATH]
    );
}

#[test]
fn compose_wires_config_volume_secrets_and_shutdown() {
    let compose = compose();
    let hh = &compose["services"]["hirehook"];
    let volumes = strings(&hh["volumes"], "hirehook.volumes");
    let config_mount = volumes
        .iter()
        .find_map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            (parts.get(1) == Some(&CONFIG_PATH)).then(|| parts[0].to_owned())
        })
        .expect("the config is mounted at /etc/hirehook/hirehook.toml");
    assert_eq!(config_mount, "./hirehook.compose.toml");
    assert!(root().join("deploy/docker").join(&config_mount).is_file());
    let data = volumes
        .iter()
        .find(|v| v.split(':').nth(1) == Some(DATA_DIR))
        .expect("a volume at /var/lib/hirehook");
    let volume_name = data.split(':').next().expect("volume name");
    assert!(
        compose["volumes"].get(volume_name).is_some(),
        "named volume {volume_name} is declared"
    );

    // The environment supplies every ${VAR} of the config.
    let (config, vars) = load_config(&read("deploy/docker/hirehook.compose.toml"), "compose");
    let env = compose_env(hh);
    for var in &vars {
        assert!(env.contains_key(var), "hirehook service lacks {var}");
    }
    // hirehook signs with the secret the receiver verifies with: the same expression.
    let receiver_env = compose_env(&compose["services"]["receiver"]);
    assert_eq!(
        env.get("RECEIVER_WEBHOOK_SECRET"),
        receiver_env.get("HIREHOOK_WEBHOOK_SECRET")
    );
    // …whose demo default is itself a valid secret.
    let default = env["RECEIVER_WEBHOOK_SECRET"]
        .split_once(":-")
        .and_then(|(_, d)| d.strip_suffix('}'))
        .expect("a ${VAR:-default}");
    hirehook::config::decode_webhook_secret(&hirehook::secret::Secret::new(default))
        .expect("the demo webhook secret decodes");
    // The receiver listens where the subscriber URL points.
    let url = url::Url::parse(&config.subscribers[0].url).expect("url");
    assert_eq!(
        receiver_env.get("LISTEN_ADDR").map(String::as_str),
        Some(format!("0.0.0.0:{}", url.port().expect("port")).as_str())
    );

    // The sim listens where the config polls.
    let sim = compose_command(&compose["services"]["sim"], "sim");
    let listen = flag_value(&sim, "--listen").expect("sim --listen");
    let base = url::Url::parse(&config.kombo.base_url).expect("base_url");
    assert_eq!(
        listen.rsplit(':').next(),
        base.port().map(|p| p.to_string()).as_deref()
    );

    // Shutdown: SIGKILL only after the delivery grace.
    let grace = humantime::parse_duration(str_of(&hh["stop_grace_period"], "stop_grace_period"))
        .expect("stop_grace_period");
    assert!(grace > config.delivery.shutdown_grace + Duration::from_secs(5));
    assert_eq!(hh["read_only"].as_bool(), Some(true));
    assert_eq!(strings(&hh["cap_drop"], "cap_drop"), ["ALL"]);
}

/// Runs the real simulator with the compose file's seed and integration count (loopback,
/// port 0, a tiny world) and reads the integration ids it prints.
#[test]
fn compose_config_polls_the_integration_ids_its_simulator_serves() {
    let compose = compose();
    let sim = compose_command(&compose["services"]["sim"], "sim");
    let seed = flag_value(&sim, "--seed").expect("sim --seed");
    let integrations = flag_value(&sim, "--integrations").expect("sim --integrations");

    let mut child = hirehook()
        .args(["sim", "--listen", "127.0.0.1:0", "--applications", "1"])
        .args(["--seed", seed, "--integrations", integrations])
        .env_remove("HIREHOOK_SIM_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hirehook sim");
    let mut line = String::new();
    let got = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    got.expect("read the simulator line");
    let announced: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("sim line {line:?}: {e}"));
    let served: Vec<&str> = announced["integrations"]
        .as_array()
        .expect("integrations")
        .iter()
        .map(|v| v.as_str().expect("id"))
        .collect();

    let (config, _) = load_config(&read("deploy/docker/hirehook.compose.toml"), "compose");
    let configured: Vec<&str> = config.integrations.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(configured, served, "hirehook.compose.toml integration ids");
    assert_eq!(
        Some(config.kombo.api_key.expose()),
        announced["api_key"].as_str(),
        "the simulator's default key"
    );
}

// ---------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------

/// `Key=value` lines of the unit, in order (keys repeat: SystemCallFilter, Environment).
fn systemd_unit() -> Vec<(String, String)> {
    read("deploy/systemd/hirehook.service")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not Key=value: {l}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

#[test]
fn systemd_unit_is_hardened_and_runs_hirehook_run() {
    let unit = systemd_unit();
    let all = |key: &str| -> Vec<&str> {
        unit.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        match all(key).as_slice() {
            [v] => v,
            other => panic!("{key}: expected exactly one, got {other:?}"),
        }
    };

    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "hirehook"),
        ("ConfigurationDirectory", "hirehook"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("WorkingDirectory", DATA_DIR),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    let families = one("RestrictAddressFamilies");
    assert!(families.contains("AF_INET") && families.contains("AF_INET6"));
    assert!(!families.contains("AF_NETLINK") && !families.contains("AF_PACKET"));
    assert!(all("SystemCallFilter").contains(&"@system-service"));
    assert!(
        !one("EnvironmentFile").is_empty(),
        "secrets come from an EnvironmentFile"
    );

    let exec = one("ExecStart");
    assert!(
        exec.contains("hirehook run --config /etc/hirehook/"),
        "ExecStart: {exec}"
    );
    assert!(
        exec.starts_with('/'),
        "ExecStart takes an absolute path: {exec}"
    );

    let stop = humantime::parse_duration(one("TimeoutStopSec")).expect("TimeoutStopSec");
    let default_grace = hirehook::config::DeliveryConfig::default().shutdown_grace;
    assert!(
        stop > default_grace + Duration::from_secs(5),
        "TimeoutStopSec {stop:?} vs shutdown_grace {default_grace:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Docs
// ---------------------------------------------------------------------------------------

#[test]
fn deploy_docs_cover_every_deploy_file() {
    let docs = read("docs/deploy.md");
    for file in deploy_files(&[""]) {
        assert!(
            docs.contains(&file),
            "docs/deploy.md does not mention {file}"
        );
    }
}

/// The replica deployments (compose and Kubernetes): their configs load with the database
/// URL from the environment, on PostgreSQL, and the two compose replicas share one config.
#[test]
fn replica_deployments_run_on_postgresql_from_the_environment() {
    let docs = yaml_documents("deploy/kubernetes-postgres/deployment.yaml");
    let map = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ConfigMap"))
        .expect("deployment-postgres.yaml holds a ConfigMap");
    let k8s = str_of(
        &map["data"]["hirehook.toml"],
        "ConfigMap data.hirehook.toml",
    )
    .to_owned();
    let deployment = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .expect("deployment-postgres.yaml holds a Deployment");
    assert!(
        deployment["spec"]["replicas"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "more than one replica"
    );
    for (name, text) in [
        (
            "deploy/docker/hirehook.compose.postgres.toml".to_owned(),
            read("deploy/docker/hirehook.compose.postgres.toml"),
        ),
        (
            "deploy/kubernetes-postgres/deployment.yaml#hirehook.toml".to_owned(),
            k8s,
        ),
    ] {
        let asked = RefCell::new(BTreeSet::new());
        let config = Config::from_str_with_env(&text, Path::new(&name), |var| {
            asked.borrow_mut().insert(var.to_owned());
            Some(if var == "HIREHOOK_DATABASE_URL" {
                "postgres://hirehook:pw@db.internal:5432/hirehook?sslmode=require".to_owned()
            } else {
                DUMMY_SECRET.to_owned()
            })
        })
        .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        assert_eq!(
            config.store.backend,
            hirehook::config::StoreBackend::Postgres,
            "{name}"
        );
        assert!(
            asked.borrow().contains("HIREHOOK_DATABASE_URL"),
            "{name}: the URL comes from the environment"
        );
        assert!(!text.contains("pw@"), "{name}: no password in the file");
    }
    let compose = yaml_documents("deploy/docker/docker-compose.postgres.yml");
    let services = &compose[0]["services"];
    for replica in ["hirehook-a", "hirehook-b"] {
        let volumes = strings(&services[replica]["volumes"], "volumes");
        assert!(
            volumes
                .iter()
                .any(|v| v.starts_with("./hirehook.compose.postgres.toml:")),
            "{replica} mounts the shared config: {volumes:?}"
        );
    }
    assert!(services["postgres"].is_mapping(), "a postgres service");
}
