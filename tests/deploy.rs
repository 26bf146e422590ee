//! The Kubernetes recipe without a cluster: the Job manifest parsed and its
//! fields checked, the container recipe read, and the pods' exact command line
//! run here for three indexes (Kubernetes' `$(NAME)` expansion done as the
//! kubelet does it), their logs concatenated as `kubectl logs -l` prints them
//! and merged with `lsbaws merge -`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::*;
use crate::merge::lsbaws_with_stdin;

const LIMIT: Duration = Duration::from_secs(90);

fn repo_file(rel: &str) -> String {
    let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn job() -> Yaml {
    let text = repo_file("deploy/kubernetes/blast-job.yaml");
    let mut docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    assert_eq!(docs.len(), 1, "one document");
    docs.remove(0)
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .expect("a list")
        .iter()
        .map(|a| a.as_str().expect("a string").to_string())
        .collect()
}

/// Whether `args` holds `flag` followed by `value`.
fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

#[test]
fn the_job_is_an_indexed_job_whose_pods_blast_together() {
    let job = job();
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(job["kind"].as_str(), Some("Job"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().expect("completions");
    assert!(completions >= 2, "{completions}");
    assert_eq!(
        spec["parallelism"].as_i64(),
        Some(completions),
        "all pods at once"
    );
    assert_eq!(
        spec["backoffLimit"].as_i64(),
        Some(0),
        "no retry at another instant"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
    let containers = pod["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert!(c["image"].as_str().is_some_and(|i| !i.is_empty()));
    assert_eq!(c["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let args = strs(&c["args"]);
    assert_eq!(args[0], "blast");
    assert!(has_pair(&args, "--start-at", "$(START)"), "{args:?}");
    assert!(
        has_pair(&args, "--tag", "pod-$(JOB_COMPLETION_INDEX)"),
        "{args:?}"
    );
    assert!(args.contains(&"--json".to_string()), "{args:?}");
    // Every $(NAME) is defined in env, or by the Job controller.
    let env = env_of(c);
    for name in references(&args) {
        assert!(
            name == "JOB_COMPLETION_INDEX" || env.contains_key(&name),
            "$({name}) undefined"
        );
    }
    assert_eq!(env.get("START").map(String::as_str), Some("__START__"));

    // The README's commands use this job's name and fill in START.
    let name = job["metadata"]["name"].as_str().expect("name");
    let readme = repo_file("README.md");
    for needle in [
        "## Beyond one machine".to_string(),
        "s/__START__/$START/".to_string(),
        format!("kubectl wait --for=condition=complete --timeout=10m job/{name}"),
        format!(
            "kubectl logs -l job-name={name} --tail=-1 | lsbaws merge --shards {completions} -"
        ),
    ] {
        assert!(readme.contains(&needle), "README lacks {needle:?}");
    }
}

#[test]
fn the_container_recipe_is_multi_stage_and_non_root() {
    let text = repo_file("deploy/Containerfile");
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage: {froms} FROM lines");
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !["root", "0", "root:root", "0:0"].contains(&user.trim()),
        "{user}"
    );
    let entry = lines
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(entry).expect("exec form");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("COPY --from=") && l.ends_with(&entry[0])),
        "the entrypoint is the binary copied from the build stage: {entry:?}"
    );
}

/// The container's env (name → value) from the manifest.
fn env_of(container: &Yaml) -> BTreeMap<String, String> {
    container["env"]
        .as_vec()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_string();
            (name, e["value"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// The `$(NAME)` references in `args`.
fn references(args: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for a in args {
        let mut rest = a.as_str();
        while let Some(i) = rest.find("$(") {
            let Some(end) = rest[i..].find(')') else {
                break;
            };
            names.push(rest[i + 2..i + end].to_string());
            rest = &rest[i + end + 1..];
        }
    }
    names
}

/// Kubernetes' expansion: `$(NAME)` from `env`, `$$` for a literal `$`;
/// an undefined reference stays as written (and fails the test here).
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let (Some(body), Some(end)) = (after.strip_prefix('('), after.find(')')) {
            let name = &body[..end - 1];
            let value = env
                .get(name)
                .unwrap_or_else(|| panic!("$({name}) undefined"));
            out.push_str(value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether this build's blast has `--start-at` (it lands from another branch;
/// until then the pods' command runs without that pair, said on stderr).
fn blast_has_start_at() -> bool {
    let (_, out, _) = lsbaws(&["blast", "--help"], Duration::from_secs(30));
    out.contains("--start-at")
}

#[test]
fn three_pods_command_lines_run_here_and_merge() {
    let job = job();
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let args = strs(&container["args"]);
    let server = Server::start(&["--quiet"]);
    let start_at = blast_has_start_at();
    // What the user sets in env: here a local target and a small load; START
    // a few seconds ahead, as the README's command sets it a minute ahead.
    let start = SystemTime::now() + Duration::from_secs(4);
    let mut env = env_of(container);
    env.insert("TARGET".into(), server.url());
    env.insert("CLIENTS".into(), "8".into());
    env.insert("DURATION".into(), "1s".into());
    env.insert("START".into(), lsbaws::blast::format_time(start));
    if !start_at {
        eprintln!("note: blast has no --start-at yet: the pods run without that pair");
    }

    let pods: Vec<Spawned> = (0..3)
        .map(|index| {
            let mut env = env.clone();
            env.insert("JOB_COMPLETION_INDEX".into(), index.to_string());
            let mut argv: Vec<String> = args.iter().map(|a| expand(a, &env)).collect();
            if !start_at {
                let i = argv
                    .iter()
                    .position(|a| a == "--start-at")
                    .expect("--start-at");
                argv.drain(i..i + 2);
            }
            Spawned::start(Command::new(bin()).args(&argv))
        })
        .collect();
    // `kubectl logs -l job-name=…`: each pod's output, stderr and stdout.
    let mut logs = String::new();
    for (index, pod) in pods.into_iter().enumerate() {
        let (status, out, err) = pod.finish(LIMIT);
        assert_eq!(
            status.code(),
            Some(0),
            "pod {index}: {}",
            String::from_utf8_lossy(&err)
        );
        logs.push_str(&String::from_utf8_lossy(&err));
        logs.push_str(&String::from_utf8_lossy(&out));
    }
    let reports: Vec<Value> = logs
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a report"))
        .collect();
    assert_eq!(reports.len(), 3, "{logs}");
    if start_at {
        // Released at START, give or take a loaded 2-core machine.
        for r in &reports {
            assert!(
                r["release_skew_ms"]
                    .as_f64()
                    .is_some_and(|s| s.abs() < 1000.0),
                "{r}"
            );
        }
    }

    let (status, out, err) = lsbaws_with_stdin(&["merge", "--shards", "3", "--json", "-"], &logs);
    assert_eq!(status.code(), Some(0), "{err}");
    let m: Value = serde_json::from_str(out.trim()).expect("merged JSON");
    let tags: Vec<&str> = m["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["tag"].as_str().expect("tag"))
        .collect();
    assert_eq!(tags, ["pod-0", "pod-1", "pod-2"]);
    let sum: u64 = reports
        .iter()
        .map(|r| r["connections"].as_u64().expect("n"))
        .sum();
    assert_eq!(m["connections"].as_u64(), Some(sum));
    assert_eq!(m["ok"].as_u64(), Some(sum), "{m}");
    assert_eq!(m["clients"], 24);
    let _ = server.stop(Duration::from_secs(20));
}
